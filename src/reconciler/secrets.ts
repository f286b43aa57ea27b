/**
 * Per-instance secrets, derived with HMAC-SHA256 from one master key. Derivation is pure, so the
 * secrets are stable across reconciles and restarts and are never stored: rotating the master key
 * rotates every instance's secrets (the next reconcile re-renders their config).
 *
 * The message is `mindroom/v1/<purpose>/<instanceId>`: a distinct purpose per secret so that one
 * leaked secret says nothing about another, and the instance id (a stable UUID, unlike the
 * subdomain) so that secrets differ per instance.
 */
import { createHmac } from "node:crypto";

import { TerminalError } from "../errors.ts";

/** A master key shorter than this is refused: it would make every derived secret guessable. */
export const MIN_MASTER_KEY_LENGTH = 16;

export type SecretPurpose = "matrix-registration-shared-secret" | "admin-token";

export interface InstanceSecrets {
  readonly matrixRegistrationSharedSecret: string;
  readonly adminToken: string;
}

/** 64 hex characters. Throws (without the key) when the master key is too short. */
export function deriveSecret(masterKey: string, instanceId: string, purpose: SecretPurpose): string {
  if (masterKey.length < MIN_MASTER_KEY_LENGTH) {
    throw new TerminalError("invalid_master_key", `master key must be at least ${MIN_MASTER_KEY_LENGTH} characters`);
  }
  if (instanceId.length === 0) throw new TerminalError("invalid_instance", "instance id is empty");
  return createHmac("sha256", masterKey).update(`mindroom/v1/${purpose}/${instanceId}`).digest("hex");
}

export function instanceSecrets(masterKey: string, instanceId: string): InstanceSecrets {
  return {
    matrixRegistrationSharedSecret: deriveSecret(masterKey, instanceId, "matrix-registration-shared-secret"),
    adminToken: deriveSecret(masterKey, instanceId, "admin-token"),
  };
}
