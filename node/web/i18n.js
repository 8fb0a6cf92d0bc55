// The interface in the resident's language: English (the text the pages are written in), Spanish and Simplified
// Chinese. The choice is the signed-in account's (kept on the node, POST /api/account/language, so it follows the
// resident to every device they sign in on; this device keeps a copy in localStorage to show the first paint in it),
// else the one made on this device before signing in, else the browser's first language we have, else English.
//
// The pages and modules are written in English; this module translates what they put on the page, as they put it
// there: every text node and the placeholder, aria-label, title and alt attributes, looked up whole (trimmed, spaces
// collapsed) in the language's STRINGS, or matched against its PATTERNS, whose {0}, {1}... stand for variable parts
// (names, counts, times). A MutationObserver does the same for everything added later, so no module needs to call a
// translation function. What the node sends (alert texts, reports, names) is not in a catalogue and stays as it is
// (the elements that show it say translate="no", so no pattern can match inside them);
// CAP alerts come in the reader's language from the node itself (Accept-Language, which call() sends).

import * as esConsole from "./i18n-es-console.js";
import * as es from "./i18n-es.js";
import * as zhConsole from "./i18n-zh-console.js";
import * as zh from "./i18n-zh.js";

export const LANGUAGES = { en: "English", es: "Español", zh: "中文" };
// The resident app's catalogue first (its entries win), then the console's and the transparency page's.
const merged = (app, console) => ({ STRINGS: { ...console.STRINGS, ...app.STRINGS },
  PATTERNS: [...(app.PATTERNS || []), ...(console.PATTERNS || [])] });
const CATALOGUES = { es: merged(es, esConsole), zh: merged(zh, zhConsole) };
const STORE_KEY = "nnode-language";
const ATTRIBUTES = ["placeholder", "aria-label", "title", "alt"];

/** The language this page is shown in: "en", "es" or "zh". */
export function currentLanguage() {
  let chosen = null;
  try {
    chosen = localStorage.getItem(STORE_KEY);
  } catch {
    // storage refused (a private window): the browser's language decides
  }
  if (chosen && chosen in LANGUAGES) return chosen;
  for (const tag of navigator.languages || [navigator.language || "en"]) {
    const base = String(tag).toLowerCase().split("-")[0];
    if (base in LANGUAGES) return base;
  }
  return "en";
}

function keepOnDevice(language) {
  try {
    localStorage.setItem(STORE_KEY, language);
  } catch {
    // not kept: this page still changes
  }
}

function chosenOnDevice() {
  try {
    const chosen = localStorage.getItem(STORE_KEY);
    return chosen in LANGUAGES ? chosen : null;
  } catch {
    return null;
  }
}

/** Save `language` with the signed-in account (a signed-out page is refused, and the device's copy decides). */
async function saveOnAccount(language) {
  try {
    await fetch("/api/account/language", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ language }),
    });
  } catch {
    // the node is out of reach: this device still changes, and the next choice is saved
  }
}

/** Keep `language` for this device and the signed-in account, and show the page in it. */
export async function chooseLanguage(language) {
  keepOnDevice(language);
  await saveOnAccount(language);
  location.reload();
}

/**
 * Apply the language a signed-in account chose (GET /api/session's `language`): a device that shows another one
 * takes it and reloads once. An account with none takes the choice made on this device (the invite page's menu).
 * Returns true when the page reloads.
 */
export function adoptAccountLanguage(session) {
  if (!session || !session.role) return false;
  if (session.language && session.language in LANGUAGES) {
    if (chosenOnDevice() === session.language) return false;
    const shown = currentLanguage();
    keepOnDevice(session.language);
    if (shown === session.language) return false;
    location.reload();
    return true;
  }
  const chosen = chosenOnDevice();
  if (chosen) saveOnAccount(chosen);
  return false;
}

function compile(catalogue) {
  const strings = new Map(Object.entries(catalogue.STRINGS || {}));
  // A pattern needs a few letters of its own: "{0} h{1}" would match any text with " h" in it (an alert's headline).
  const usable = (catalogue.PATTERNS || []).filter(([english]) => english.replace(/\{\d+\}/g, "")
    .replace(/[^A-Za-z]/g, "").length >= 5);
  const patterns = usable.map(([english, translated]) => {
    const parts = english.split(/\{(\d+)\}/);
    let source = "^";
    const order = [];
    parts.forEach((part, i) => {
      if (i % 2) {
        source += "(.+?)";
        order.push(Number(part));
      } else {
        source += part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
      }
    });
    return { regex: new RegExp(`${source}$`, "s"), order, translated };
  });
  return { strings, patterns };
}

/** The translation of one text (whole), or null when the catalogue has none. */
function lookup(table, text) {
  const key = text.replace(/\s+/g, " ").trim();
  if (!key) return null;
  const exact = table.strings.get(key);
  if (exact !== undefined) return exact;
  for (const { regex, order, translated } of table.patterns) {
    const found = key.match(regex);
    if (found) {
      const values = {};
      order.forEach((index, i) => { values[index] = lookup(table, found[i + 1]) ?? found[i + 1]; });
      return translated.replace(/\{(\d+)\}/g, (_, index) => values[index] ?? "");
    }
  }
  return null;
}

function translateText(table, node) {
  const text = node.data;
  const translated = lookup(table, text);
  if (translated === null) return;
  const lead = text.match(/^\s*/)[0];
  const trail = text.match(/\s*$/)[0];
  const next = lead + translated + trail;
  if (next !== text) node.data = next;   // never the same value: that would be a mutation of its own
}

function translateAttributes(table, element) {
  for (const name of ATTRIBUTES) {
    const value = element.getAttribute(name);
    if (!value) continue;
    const translated = lookup(table, value);
    if (translated !== null && translated !== value) element.setAttribute(name, translated);
  }
}

function translateTree(table, root) {
  if (root.nodeType === Node.TEXT_NODE) {
    if (!root.parentElement?.closest("script, style, [translate=no]")) translateText(table, root);
    return;
  }
  if (root.nodeType !== Node.ELEMENT_NODE || root.closest("[translate=no]")) return;
  translateAttributes(table, root);
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_ELEMENT | NodeFilter.SHOW_TEXT, {
    acceptNode: (node) => (node.nodeType === Node.ELEMENT_NODE
      && (node.matches("script, style") || node.getAttribute("translate") === "no")
      ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT),
  });
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (node.nodeType === Node.TEXT_NODE) translateText(table, node);
    else translateAttributes(table, node);
  }
}

/** Translate this page now and everything added to it later; set <html lang>. Does nothing in English. */
export function startTranslating(language = currentLanguage()) {
  document.documentElement.lang = language === "zh" ? "zh-Hans" : language;
  const catalogue = CATALOGUES[language];
  if (!catalogue) return;
  const table = compile(catalogue);
  translateTree(table, document.documentElement);
  const title = lookup(table, document.title);
  if (title !== null) document.title = title;
  new MutationObserver((records) => {
    for (const record of records) {
      if (record.type === "childList") record.addedNodes.forEach((node) => translateTree(table, node));
      else if (record.type === "characterData") translateTree(table, record.target);
      else if (record.type === "attributes") translateAttributes(table, record.target);
    }
  }).observe(document.documentElement, { childList: true, subtree: true, characterData: true, attributes: true,
    attributeFilter: ATTRIBUTES });
}

/** Wire a <select> to the languages: shows the current one, and a choice reloads the page in it. */
export function wireLanguageMenu(select) {
  if (!select) return;
  const language = currentLanguage();
  select.replaceChildren(...Object.entries(LANGUAGES).map(([code, name]) => {
    const option = document.createElement("option");
    option.value = code;
    option.textContent = name;
    option.lang = code === "zh" ? "zh-Hans" : code;
    option.translate = false;
    option.selected = code === language;
    return option;
  }));
  select.addEventListener("change", () => chooseLanguage(select.value));
}
