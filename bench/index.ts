/**
 * `npm run bench -- NAME [options]`: each benchmark prints JSON and a readable table, and compares
 * against a baseline measured in the same run.
 */
const BENCHMARKS: Record<string, () => Promise<{ run(argv: string[]): Promise<void> }>> = {
  api: () => import("./api.ts"),
  backup: () => import("./backup.ts"),
  bursts: () => import("./bursts.ts"),
  chaos: () => import("./chaos.ts"),
  ssh: () => import("./ssh.ts"),
  scale: () => import("./scale.ts"),
  startup: () => import("./startup.ts"),
  webhook: () => import("./webhook.ts"),
};

export async function run(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  const load = name ? BENCHMARKS[name] : undefined;
  if (!load) {
    process.stderr.write(`usage: npm run bench -- ${Object.keys(BENCHMARKS).join("|")} [options]\n`);
    return 2;
  }
  await (await load()).run(rest);
  return 0;
}
