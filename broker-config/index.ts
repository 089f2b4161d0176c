// broker-config/: broker configuration templates that the tests start and installations render.
export { renderTemplate, templateVariables, type RenderResult, type TemplateVariable } from './template.ts';
export { BROKER_CONFIG_DIR } from './paths.ts';
