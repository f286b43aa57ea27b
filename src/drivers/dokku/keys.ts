/**
 * SSH key generation. ssh2's `generateKeyPairSync("ed25519")` now and then (about 1 key in 300,
 * measured) returns a private key that ssh2's own `parseKey` rejects as "Malformed OpenSSH private
 * key"; such a key would fail every connection it is used for. So each generated pair is parsed
 * back and regenerated until it parses.
 */
import ssh2 from "ssh2";

const MAX_TRIES = 20;

export interface SshKeyPair {
  /** OpenSSH private key (no passphrase). Secret. */
  readonly private: string;
  /** OpenSSH public key line. */
  readonly public: string;
}

export function generateEd25519KeyPair(): SshKeyPair {
  for (let attempt = 0; attempt < MAX_TRIES; attempt++) {
    const pair = ssh2.utils.generateKeyPairSync("ed25519");
    if (!(ssh2.utils.parseKey(pair.private) instanceof Error) && !(ssh2.utils.parseKey(pair.public) instanceof Error)) return pair;
  }
  throw new Error(`could not generate a usable ed25519 key pair in ${MAX_TRIES} tries`);
}
