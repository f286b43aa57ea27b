import { describe, expect, test } from "vitest";

import { classify, type Verdict } from "../../src/drivers/dokku/classify.ts";
import { fixture } from "./fake-runner.ts";

const lock = (v: string): string => fixture(v, v === "0.38" ? "deploy-lock.out" : "deploy-lock.err");

describe("classify", () => {
  const cases: Record<string, { reason: string; command: string; exitCode: number; stdout?: string; stderr?: string; want: Verdict }> = {
    ok: { reason: "exit 0 is success", command: "ps:restart", exitCode: 0, want: { outcome: "ok" } },
    okWithWarnings: { reason: "warnings on stderr do not fail a command", command: "ps:restart", exitCode: 0, stderr: " !     No deployed-image-tag property saved\n", want: { outcome: "ok" } },
    nameTaken: { reason: "creating an app that exists", command: "apps:create", exitCode: 1, stderr: fixture("0.38", "apps-create-taken.err"), want: { outcome: "alreadyDone", reason: "AppExists" } },
    imageUnchanged030: { reason: "same image exits 1 on stderr before 0.38", command: "git:from-image", exitCode: 1, stderr: fixture("0.30", "git-unchanged.err"), want: { outcome: "alreadyDone", reason: "ImageUnchanged" } },
    imageUnchanged038: { reason: "same image exits 1 on stdout under build capture", command: "git:from-image", exitCode: 1, stdout: fixture("0.38", "git-unchanged.out"), want: { outcome: "alreadyDone", reason: "ImageUnchanged" } },
    mountExists: { reason: "mounting twice", command: "storage:mount", exitCode: 1, stderr: fixture("0.34", "mount-exists.err"), want: { outcome: "alreadyDone", reason: "MountExists" } },
    destroyMissing: { reason: "destroying an app that is gone", command: "apps:destroy", exitCode: 20, stderr: fixture("0.38", "app-missing.err"), want: { outcome: "alreadyDone", reason: "AppAbsent" } },
    alreadyRunning: { reason: "starting a running app", command: "ps:start", exitCode: 0, stderr: fixture("0.38", "already-running.err"), want: { outcome: "alreadyDone", reason: "AlreadyRunning" } },
    lock030: { reason: "deploy lock is transient", command: "git:from-image", exitCode: 1, stderr: lock("0.30"), want: { outcome: "retryable", reason: "DeployLocked" } },
    lock038: { reason: "deploy lock text is on stdout in 0.38", command: "git:from-image", exitCode: 1, stdout: lock("0.38"), want: { outcome: "retryable", reason: "DeployLocked" } },
    appGone: { reason: "an app vanished under a mutation: re-observe", command: "ps:stop", exitCode: 20, stderr: fixture("0.38", "app-missing.err"), want: { outcome: "retryable", reason: "AppNotFound" } },
    retire: { reason: "ps:retire host lock", command: "ps:restart", exitCode: 137, want: { outcome: "retryable", reason: "RetireLocked" } },
    pluginMissing: { reason: "unknown command = plugin not installed", command: "letsencrypt:enable", exitCode: 1, stderr: fixture("0.38", "not-a-command.err"), want: { outcome: "terminal", reason: "PluginMissing" } },
    tooOld: { reason: "Go flag unknown to this version", command: "apps:list", exitCode: 2, stderr: fixture("0.38", "unknown-flag.err"), want: { outcome: "terminal", reason: "DokkuTooOld" } },
    invalidName: { reason: "name regex", command: "apps:create", exitCode: 1, stderr: fixture("0.38", "invalid-name.err"), want: { outcome: "terminal", reason: "InvalidAppName" } },
    pullFailed: { reason: "image does not exist", command: "git:from-image", exitCode: 1, stderr: fixture("0.38", "pull-failed.err"), want: { outcome: "terminal", reason: "ImageNotFound" } },
    badBase64: { reason: "config rejected", command: "config:set", exitCode: 1, stderr: " !     illegal base64 data at input byte 4 for key 'K'\n", want: { outcome: "terminal", reason: "InvalidConfig" } },
    noEmail: { reason: "letsencrypt needs setup", command: "letsencrypt:enable", exitCode: 1, stderr: " !     ERROR: Cannot request a certificate without an e-mail address!\n", want: { outcome: "terminal", reason: "TlsNotConfigured" } },
    unknownFailure: { reason: "anything else retries", command: "ps:restart", exitCode: 1, stderr: " !     something odd\n", want: { outcome: "retryable", reason: "CommandFailed" } },
    takenOnOtherCommand: { reason: "'already taken' only means done for apps:create", command: "apps:rename", exitCode: 1, stderr: " !     Name is already taken\n", want: { outcome: "retryable", reason: "CommandFailed" } },
  };
  for (const [name, tc] of Object.entries(cases)) {
    test(name, () => {
      expect(classify(tc.command, { exitCode: tc.exitCode, stdout: tc.stdout ?? "", stderr: tc.stderr ?? "" }), tc.reason).toEqual(tc.want);
    });
  }
});
