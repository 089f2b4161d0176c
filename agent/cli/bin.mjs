#!/usr/bin/env node
// The `lastgasp` command on Node: TypeScript runs through tsx's loader, no build step.
import { register } from 'tsx/esm/api';

register();
await import('./entry.ts');
