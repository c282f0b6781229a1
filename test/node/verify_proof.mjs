// A verifier of ocx inclusion proofs outside PostgreSQL, with Node's crypto
// only: the third-party verifier docs/integrity.md describes.
//
//   node verify_proof.mjs proof.json [public-key.pem]
//
// proof.json is the jsonb that ocx.prove(event_id) returns.  Checks that
//   1. the event's stored fields, after its previous hash, hash to "hash"
//      (the canonical encoding of docs/integrity.md, "The event hash"),
//   2. the leaf SHA-256(0x00 || txid || global_position || hash) is "leaf",
//   3. the path folds the leaf into the seal's root,
//   4. with a public key: the seal's signature verifies over the seal
//      message rebuilt from the seal's fields.
// Prints "ok" and exits 0, or prints what failed and exits 1.
import { createHash, createPublicKey, verify } from 'node:crypto';
import { readFileSync } from 'node:fs';

const sha256 = (...parts) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};

// a field: 0x00 for NULL, else 0x01, the length (4 bytes big-endian), the bytes
function field(bytes) {
  if (bytes === null || bytes === undefined) return Buffer.from([0]);
  const head = Buffer.alloc(5);
  head[0] = 1;
  head.writeUInt32BE(bytes.length, 1);
  return Buffer.concat([head, bytes]);
}
const text = (s) => (s === null || s === undefined ? null : Buffer.from(s, 'utf8'));
const uuid = (s) => (s === null || s === undefined ? null : Buffer.from(s.replace(/-/g, ''), 'hex'));
function int(v, bytes) {
  const b = Buffer.alloc(bytes);
  if (bytes === 8) b.writeBigUInt64BE(BigInt.asUintN(64, BigInt(v)));
  else b.writeUInt32BE(Number(v) >>> 0);
  return b;
}

export function eventHash(e, prevHex) {
  const tags = e.tags === null || e.tags === undefined
    ? null
    : Buffer.concat(e.tags.map((t) => field(text(t))));
  return sha256(
    Buffer.from('ocx-event-v1', 'ascii'),
    field(prevHex ? Buffer.from(prevHex, 'hex') : null),
    field(text(e.stream_id)),
    field(int(e.stream_version, 8)),
    field(uuid(e.event_id)),
    field(text(e.source)),
    field(text(e.type)),
    field(int(e.schema_version, 4)),
    field(int(e.time_us, 8)),
    field(text(e.data)),
    field(text(e.metadata)),
    field(uuid(e.correlation_id)),
    field(uuid(e.causation_id)),
    field(text(e.tenant_id)),
    field(tags),
  );
}

export function leafHash(txid, position, hashHex) {
  return sha256(Buffer.from([0]), int(txid, 8), int(position, 8),
    hashHex ? Buffer.from(hashHex, 'hex') : Buffer.alloc(32));
}

export function sealMessage(s) {
  return Buffer.concat([
    Buffer.from('ocx-seal-v1', 'ascii'),
    int(s.first_txid, 8), int(s.first_position, 8),
    int(s.last_txid, 8), int(s.last_position, 8), int(s.events, 8),
    Buffer.from(s.root, 'hex'),
  ]);
}

// returns null when the proof holds, else what is wrong
export function checkProof(proof, publicKeyPem) {
  const e = proof.event;
  const h = eventHash(e, proof.prev).toString('hex');
  if (h !== proof.hash) return `the event's fields do not hash to its stored hash (${h} != ${proof.hash})`;
  const leaf = leafHash(e.txid, e.global_position, proof.hash).toString('hex');
  if (leaf !== proof.leaf) return 'the leaf is not the hash of the event\'s place and hash';
  let node = Buffer.from(leaf, 'hex');
  for (const step of proof.path) {
    const sib = Buffer.from(step.hash, 'hex');
    node = step.side === 'left'
      ? sha256(Buffer.from([1]), sib, node)
      : sha256(Buffer.from([1]), node, sib);
  }
  if (node.toString('hex') !== proof.seal.root) return 'the path does not lead to the seal\'s root';
  if (publicKeyPem) {
    if (!proof.seal.signature) return 'the seal is not signed';
    const ok = verify(null, sealMessage(proof.seal), createPublicKey(publicKeyPem),
      Buffer.from(proof.seal.signature, 'hex'));
    if (!ok) return 'the seal\'s signature does not verify with the public key';
  }
  return null;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [, , proofFile, keyFile] = process.argv;
  if (!proofFile) {
    console.error('usage: node verify_proof.mjs proof.json [public-key.pem]');
    process.exit(2);
  }
  const proof = JSON.parse(readFileSync(proofFile, 'utf8'));
  const problem = checkProof(proof, keyFile ? readFileSync(keyFile, 'utf8') : null);
  if (problem) {
    console.log(`rejected: ${problem}`);
    process.exit(1);
  }
  console.log('ok');
}
