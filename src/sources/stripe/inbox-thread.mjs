// Entry of the Stripe inbox thread (inbox-thread.ts starts it). A worker thread does not inherit
// the loader the main thread registered in src/bin.mjs, so it registers tsx itself.
import { register } from "tsx/esm/api";

register();
await import("./inbox-thread-main.ts");
