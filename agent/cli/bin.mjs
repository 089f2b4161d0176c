#!/usr/bin/env node
// The `lastgasp` command. TypeScript runs through tsx's loader: no build step.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('./main.ts');
process.exitCode = await main(process.argv.slice(2));
