#!/usr/bin/env node
// Entry point of the `mindroom-reconciler` command. It registers tsx's loader so the TypeScript
// sources run as they are, with no build step after `npm install`.
import { register } from "tsx/esm/api";

register();
const { main } = await import("./cli.ts");
process.exitCode = await main(process.argv.slice(2));
