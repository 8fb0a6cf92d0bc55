// The report form and the list of reports.
//
// The form follows Nextdoor's anti-profiling redesign: the event comes first ("what happened?"), describing a
// person is an explicit, optional step, and a description needs at least two details other than race or
// ethnicity. Race alone fits many innocent neighbors and helps no one find the person, so it is asked last and
// never accepted on its own. The node checks this too; checking here explains it before anything is sent.

import { $, el, fileProblem, getJSON, postForm, reportArticle, setStatus, toDate, toLocalInput, withOffset }
  from "./common.js";

const PERSON_KEYS = ["clothing", "hair", "age", "height", "build", "shoes", "features", "vehicle"];
const MIN_DETAILS = 2;

/** Wire the report section; returns {show(), upsert(report)} for the router and the live stream. */
export function initReports(limits = {}) {
  const form = $("report-form");
  const status = $("report-status");
  const submit = $("report-submit");
  const toggle = $("report-person-toggle");
  const fieldset = $("report-person");
  const count = $("report-person-count");
  const photo = $("report-photo");
  const preview = $("report-photo-preview");
  const when = $("report-when");
  const list = new ReportList($("reports-list"), $("reports-status"));
  const personInput = (key) => $(`person-${key}`);
  let previewUrl = null;

  const details = () => PERSON_KEYS.filter((key) => personInput(key).value.trim() !== "");
  const showCount = () => {
    const n = details().length;
    count.textContent = `Details other than race/ethnicity: ${n} (at least ${MIN_DETAILS} needed).`;
    count.classList.toggle("status-ok", n >= MIN_DETAILS);
  };
  const setPerson = (open) => {
    toggle.checked = open;
    fieldset.hidden = !open;
    fieldset.disabled = !open;
    showCount();
  };
  toggle.addEventListener("change", () => {
    setPerson(toggle.checked);
    if (toggle.checked) personInput(PERSON_KEYS[0]).focus();
  });
  fieldset.addEventListener("input", showCount);
  fieldset.addEventListener("change", showCount);
  setPerson(false);

  // Reports are about the past: the picker should not offer next week.
  const setMax = () => { when.max = toLocalInput(new Date()); };
  setMax();
  when.addEventListener("focus", setMax);

  photo.addEventListener("change", () => {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = null;
    const file = photo.files && photo.files[0];
    const found = file ? fileProblem(file, "image", limits.photo_bytes) : "";
    photo.setAttribute("aria-invalid", found ? "true" : "false");
    // Say what is wrong with the photo, and take back only that (not the answer to a report just sent).
    if (found) setStatus(status, found, "error");
    else if (status.dataset.photoProblem) setStatus(status, "");
    if (found) status.dataset.photoProblem = "1";
    else delete status.dataset.photoProblem;
    if (file && !found) {
      previewUrl = URL.createObjectURL(file);
      preview.replaceChildren(el("img", { src: previewUrl, alt: "Preview of the photo you chose" }));
    } else {
      preview.replaceChildren();
    }
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (toggle.checked && details().length < MIN_DETAILS) {
      setStatus(status, `To describe a person, give at least ${MIN_DETAILS} details other than race or ethnicity `
        + "(for example clothing and hair). Race or ethnicity alone fits many innocent neighbors and does not help "
        + "anyone recognize the person. Add details, or uncheck \u201cDescribe a person\u201d.", "error");
      const empty = PERSON_KEYS.map(personInput).find((input) => input.value.trim() === "");
      (empty || personInput(PERSON_KEYS[0])).focus();
      return;
    }
    const data = new FormData();
    data.append("what", $("report-what").value.trim());
    data.append("category", $("report-category").value);
    data.append("where", $("report-where").value.trim());
    data.append("when", withOffset(when.value));
    if (toggle.checked) {
      for (const key of [...PERSON_KEYS, "race"]) {
        const value = personInput(key).value.trim();
        if (value) data.append(`person_${key}`, value);
      }
    }
    const file = photo.files && photo.files[0];
    const found = file ? fileProblem(file, "image", limits.photo_bytes) : "";
    if (found) {
      setStatus(status, found, "error");
      photo.focus();
      return;
    }
    if (file) data.append("photo", file, file.name);

    submit.disabled = true;
    form.setAttribute("aria-busy", "true");
    setStatus(status, "Sending…");
    try {
      const answer = await postForm("/api/reports", data);
      if (answer.report?.held) {
        setStatus(status, "Thank you. Your report was sent to the manager, who reviews it before neighbors see "
          + `it: it ${answer.report.held_reason.split(":")[0]}.`, "ok");
      } else {
        setStatus(status, "Thank you. Your report was posted.", "ok");
      }
      form.reset();
      setPerson(false);
      photo.dispatchEvent(new Event("change"));
      if (answer.report) list.upsert(answer.report);
      else list.load();
    } catch (error) {
      setStatus(status, error.message, "error");
    } finally {
      submit.disabled = false;
      form.removeAttribute("aria-busy");
    }
  });

  let loaded = false;
  return {
    show() {
      if (!loaded) { loaded = true; list.load(); }
    },
    upsert(report) { list.upsert(report); },
    /** A moderation decision or a withdrawal: reload what this resident may see (if the list was shown). */
    reload() { if (loaded) list.load(); },
  };
}

/** The reports under the form, newest first; live "report" messages update it in place. */
class ReportList {
  constructor(node, statusNode) {
    this.node = node;
    this.statusNode = statusNode;
    this.reports = new Map();
  }

  async load() {
    setStatus(this.statusNode, "Loading reports…");
    try {
      const answer = await getJSON("/api/reports");
      this.reports = new Map((answer.reports || []).map((r) => [String(r.id), r]));
      this.render();
    } catch (error) {
      setStatus(this.statusNode, `Could not load reports: ${error.message}`, "error");
    }
  }

  upsert(report) {
    if (!report || report.id === undefined) return;
    this.reports.set(String(report.id), { ...this.reports.get(String(report.id)), ...report });
    this.render();
  }

  render() {
    const sorted = [...this.reports.values()]
      .sort((a, b) => (toDate(b.created)?.getTime() || 0) - (toDate(a.created)?.getTime() || 0));
    this.node.replaceChildren(...sorted.map((report) => reportArticle(report)));
    setStatus(this.statusNode, sorted.length ? "" : "No reports yet.");
  }
}
