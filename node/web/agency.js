// The node's /agency page only says where the agency portal lives now (the agency's own computer, through
// `nnode agency-client portal`) and fills in this node's address and the key in its signed descriptor. It handles
// no key: a page a node serves could read one.

const address = document.getElementById("node-address");
const key = document.getElementById("node-key");
address.textContent = location.origin;

fetch(`/.well-known/nnode?nonce=${crypto.getRandomValues(new Uint32Array(2)).join("")}`,
      { credentials: "omit", cache: "no-store" })
  .then((response) => response.json())
  .then((descriptor) => { key.textContent = typeof descriptor.node === "string" ? descriptor.node : "(unknown)"; })
  .catch(() => { key.textContent = "(the node did not answer)"; });
