// HS256 JWT check shared by the benchmark peers (peer-local.mjs, lambda/peer-lambda.mjs):
// the signature, then `sub` and an unexpired `exp`. Returns the claims, or null.
import { createHmac, timingSafeEqual } from 'node:crypto';

export function verifyHs256(token, secret) {
  const parts = String(token).split('.');
  if (parts.length !== 3) return null;
  const expected = createHmac('sha256', secret).update(`${parts[0]}.${parts[1]}`).digest();
  const given = Buffer.from(parts[2], 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
  let claims;
  try {
    claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
  } catch {
    return null;
  }
  if (typeof claims.sub !== 'string' || typeof claims.exp !== 'number') return null;
  if (claims.exp * 1000 < Date.now()) return null;
  return claims;
}
