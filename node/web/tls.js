// On the node's plain-http address, move to its https address once this device trusts the node's certificate (the
// building's CA installed from the join page, or the manager's own certificate). A fetch of /tls/probe at the https
// address succeeds only then: a certificate the device does not trust fails the fetch, and nothing is remembered,
// so a device that drops the CA simply stays on http. Every page loads this; the join page imports `secure`.

const LOOPBACK = new Set(["localhost", "127.0.0.1", "[::1]"]);   // already a secure context over http
const PROBE_TIMEOUT = 4000;

async function tlsInfo() {
  try {
    const answer = await fetch("/api/tls", { cache: "no-store", credentials: "omit" });
    return answer.ok ? await answer.json() : null;
  } catch {
    return null;
  }
}

/** The node's https origin as this device reaches it: the manager's https address, or this host at the https port. */
export function httpsOrigin(info) {
  return info.url ? new URL(info.url).origin : `https://${location.hostname}:${info.port}`;
}

/** Whether this device trusts the node's https address now. */
export async function probe(info) {
  try {
    await fetch(`${httpsOrigin(info)}/tls/probe`, { mode: "no-cors", cache: "no-store", credentials: "omit",
                                                    signal: AbortSignal.timeout(PROBE_TIMEOUT) });
    return true;
  } catch {
    return false;
  }
}

/** Open this page at the https address (the fragment too: an invite code rides in it). */
export function goSecure(info, fragment = location.hash) {
  location.replace(httpsOrigin(info) + location.pathname + location.search + fragment);
}

async function check() {
  if (location.protocol !== "http:") return { info: null, trusted: location.protocol === "https:" };
  const info = await tlsInfo();
  if (!info || !info.mode || info.mode === "off" || LOOPBACK.has(location.hostname)) return { info, trusted: false };
  const trusted = await probe(info);
  if (trusted) {
    goSecure(info);
    return new Promise(() => {});   // the page is going away
  }
  return { info, trusted };
}

/** {info: /api/tls's answer or null, trusted}; never settles when the page moves to https. */
export const secure = check();
