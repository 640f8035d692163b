// Calls a breachd daemon through the hibp library, unchanged, pointed at it
// with baseUrl, and prints what each call returned as one JSON document.
// Environment: PP_BASE (the range API's base URL), HIBP_BASE (the v3 API's),
// HIBP_KEY (a breachd API key), ACCOUNT (an exposed address), NOBODY (an
// address in no breach), BREACH (a breach name).
import {
  breach, breachedAccount, breaches, dataClasses, latestBreach,
  pwnedPassword, pwnedPasswordRange,
} from 'hibp';

const env = process.env;
const pp = { baseUrl: env.PP_BASE, userAgent: 'breachd-hibp-test' };
const v3 = { baseUrl: env.HIBP_BASE, userAgent: 'breachd-hibp-test', apiKey: env.HIBP_KEY };
const out = {};
const attempt = async (name, fn) => {
  try {
    out[name] = await fn();
  } catch (err) {
    out[name] = { error: String(err.message || err) };
  }
};

await attempt('range', () => pwnedPasswordRange('5BAA6', pp));
await attempt('rangePaddedNTLM', async () => {
  const r = await pwnedPasswordRange('8846f', { ...pp, addPadding: true, mode: 'ntlm' });
  return { entries: Object.keys(r).length, password: r['7EAEE8FB117AD06BDD830B7586C'] ?? null,
    zeros: Object.values(r).filter((n) => n === 0).length };
});
await attempt('pwnedPassword', () => pwnedPassword('password', pp));
await attempt('pwnedPasswordAbsent', () => pwnedPassword('not in any corpus, surely 7f3a', pp));
await attempt('breachedAccount', () => breachedAccount(env.ACCOUNT, { ...v3, truncate: false }));
await attempt('breachedAccountTruncated', () => breachedAccount(env.ACCOUNT, v3));
await attempt('breachedAccountNobody', () => breachedAccount(env.NOBODY, v3));
await attempt('breachedAccountBadKey', () => breachedAccount(env.ACCOUNT, { ...v3, apiKey: 'not-a-key' }));
await attempt('breaches', () => breaches(v3));
await attempt('breachesOtherDomain', () => breaches({ ...v3, domain: 'example.org' }));
await attempt('breach', () => breach(env.BREACH, v3));
await attempt('breachLowerCase', () => breach(env.BREACH.toLowerCase(), v3));
await attempt('breachUnknown', () => breach('NoSuchBreach', v3));
await attempt('dataClasses', () => dataClasses(v3));
await attempt('latestBreach', () => latestBreach(v3));
process.stdout.write(JSON.stringify(out));
