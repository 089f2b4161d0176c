export { RoleManager, type Role, type RoleHost, type RoleManagerOptions, type TakeoverRecord } from './roles.ts';
