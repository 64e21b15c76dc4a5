#include "fer/report/explain/gallery.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

namespace fer {
namespace {

// The page: static markup, style and script; the data goes in between.
constexpr const char* kHead = R"HTML(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>@TITLE@</title>
<style>
body { font-family: sans-serif; margin: 1em 2em; color: #222; }
h1 { font-size: 1.3em; }
.header img { max-width: 100%; margin: 0.3em 0; border: 1px solid #ddd; }
.controls { position: sticky; top: 0; background: #fff; padding: 0.5em 0; border-bottom: 1px solid #ddd; z-index: 1; }
.controls label { margin-right: 1.2em; }
.grid { display: flex; flex-wrap: wrap; gap: 12px; margin-top: 1em; }
.card { border: 1px solid #ccc; border-radius: 4px; padding: 6px; width: @CARD_WIDTH@px; font-size: 0.85em; }
table.ranking { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
table.ranking th, table.ranking td { border: 1px solid #ddd; padding: 2px 8px; text-align: right; }
table.ranking td:first-child, table.ranking th:first-child { text-align: left; }
table.ranking tr.random { color: #888; }
.card img { width: 100%; display: block; }
.card.misclassified { border-color: #d62728; }
.card.failed { background: #fff4f4; }
.card[hidden] { display: none; }
.meta span { margin-right: 0.8em; }
.source { color: #666; word-break: break-all; }
</style>
</head>
<body>
)HTML";

constexpr const char* kBody = R"HTML(
<div class="controls">
  <label>True class <select id="true"><option value="">any</option></select></label>
  <label>Predicted <select id="pred"><option value="">any</option></select></label>
  <label><input type="checkbox" id="misclassified"> misclassified only</label>
  <label>Sort <select id="sort">
    <option value="index">input order</option>
    <option value="confidence-desc">confidence, highest first</option>
    <option value="confidence-asc">confidence, lowest first</option>
    <option value="faithfulness-desc">faithfulness, best first</option>
    <option value="faithfulness-asc">faithfulness, worst first</option>
  </select></label>
  <span id="shown"></span>
</div>
<div class="grid" id="grid"></div>
<script>
"use strict";
const data = JSON.parse(document.getElementById("gallery-data").textContent);
const grid = document.getElementById("grid");
const controls = {true: document.getElementById("true"), pred: document.getElementById("pred"),
                  misclassified: document.getElementById("misclassified"), sort: document.getElementById("sort")};
for (const name of data.classes)
  for (const select of [controls.true, controls.pred]) select.add(new Option(name, name));

function text(tag, content, cls) {
  const e = document.createElement(tag);
  e.textContent = content;
  if (cls) e.className = cls;
  return e;
}
function misclassified(c) { return c.true !== "" && c.predicted !== "" && c.true !== c.predicted; }
const cards = data.cards.map(c => {
  const card = document.createElement("div");
  card.className = "card" + (misclassified(c) ? " misclassified" : "") + (c.error ? " failed" : "");
  card.dataset.index = c.index;
  card.dataset.true = c.true;
  card.dataset.pred = c.predicted;
  if (c.image) {
    const img = document.createElement("img");
    img.src = c.image; img.loading = "lazy"; img.alt = c.source;
    card.appendChild(img);
  }
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.appendChild(text("span", "#" + c.index));
  meta.appendChild(text("span", "true: " + (c.true || "?")));
  if (c.predicted && c.confidence !== null) meta.appendChild(text("span", "pred: " + c.predicted + " " + c.confidence.toFixed(2)));
  if (c.faithfulness !== null) meta.appendChild(text("span", data.faithfulness_method + " ins−del AUC " + c.faithfulness.toFixed(3)));
  card.appendChild(meta);
  card.appendChild(text("div", c.source, "source"));
  if (c.error) card.appendChild(text("div", "error: " + c.error, "error"));
  return {card: card, item: c};
});

function keyOf(entry, field) {
  const v = entry.item[field];
  return v === null || v === undefined ? NaN : v;
}
function apply() {
  const want = {true: controls.true.value, pred: controls.pred.value, wrong: controls.misclassified.checked};
  let shown = 0;
  for (const e of cards) {
    const c = e.item;
    const visible = (!want.true || c.true === want.true) && (!want.pred || c.predicted === want.pred) &&
                    (!want.wrong || misclassified(c));
    e.card.hidden = !visible;
    shown += visible;
  }
  const [field, direction] = controls.sort.value.split("-");
  const order = cards.slice();
  if (field !== "index")
    order.sort((a, b) => {
      const x = keyOf(a, field), y = keyOf(b, field);
      if (isNaN(x) !== isNaN(y)) return isNaN(x) ? 1 : -1;  // unmeasured last
      return (direction === "asc" ? x - y : y - x) || a.item.index - b.item.index;
    });
  for (const e of order) grid.appendChild(e.card);
  document.getElementById("shown").textContent = shown + " of " + cards.length + " shown";
}
function readHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  controls.true.value = p.get("true") || "";
  controls.pred.value = p.get("pred") || "";
  controls.misclassified.checked = p.get("misclassified") === "1";
  controls.sort.value = p.get("sort") || "index";
  if (controls.sort.selectedIndex < 0) controls.sort.value = "index";
  apply();
}
function writeHash() {
  const p = new URLSearchParams();
  if (controls.true.value) p.set("true", controls.true.value);
  if (controls.pred.value) p.set("pred", controls.pred.value);
  if (controls.misclassified.checked) p.set("misclassified", "1");
  if (controls.sort.value !== "index") p.set("sort", controls.sort.value);
  history.replaceState(null, "", "#" + p.toString());
  apply();
}
for (const c of Object.values(controls)) c.addEventListener("change", writeHash);
window.addEventListener("hashchange", readHash);
readHash();
</script>
</body>
</html>
)HTML";

std::string escape_html(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

// JSON inside <script>: "</" would end the element early; "<\/" means the same in JSON.
std::string script_safe(std::string json) {
  for (std::size_t at = json.find("</"); at != std::string::npos; at = json.find("</", at + 3)) json.insert(at + 1, "\\");
  return json;
}

nlohmann::json gallery_card_json(const GalleryCard& c) {
  return {{"index", c.index},
          {"source", c.source},
          {"image", c.image},
          {"true", c.true_label},
          {"predicted", c.predicted},
          {"confidence", c.confidence >= 0 ? nlohmann::json(c.confidence) : nlohmann::json()},
          {"faithfulness", std::isfinite(c.faithfulness) ? nlohmann::json(c.faithfulness) : nlohmann::json()},
          {"error", c.error}};
}

// The methods ranked by faithfulness: the first thing a reader of many methods wants.
std::string ranking_table(const std::vector<FaithfulnessReport::Rank>& ranking) {
  if (ranking.empty()) return "";
  std::string html =
      "<table class=\"ranking\"><caption>Faithfulness on these faces (predicted class; deletion AUC lower is "
      "better, insertion higher)</caption>\n<tr><th>method</th><th>insertion &minus; deletion</th><th>deletion "
      "AUC</th><th>insertion AUC</th><th>faces</th></tr>\n";
  for (const auto& r : ranking)
    html += fmt::format("<tr{}><td>{}</td><td>{:.3f}</td><td>{:.3f}</td><td>{:.3f}</td><td>{}</td></tr>\n",
                        r.method == "random" ? " class=\"random\"" : "", escape_html(r.method), r.score,
                        r.deletion_auc, r.insertion_auc, r.n);
  return html + "</table>\n";
}

}  // namespace

std::string gallery_html(const GalleryPage& page) {
  nlohmann::json data = {{"classes", page.class_names},
                         {"faithfulness_method", page.faithfulness_method},
                         {"cards", nlohmann::json::array()}};
  for (const auto& c : page.cards) data["cards"].push_back(gallery_card_json(c));

  std::string head = kHead;
  head.replace(head.find("@TITLE@"), 7, escape_html(page.title));
  // A sheet wraps after kSheetColumns panels of ~300 px: the card shows up to four.
  const int columns = std::clamp(page.panels, 1, 4);
  head.replace(head.find("@CARD_WIDTH@"), 12, std::to_string(columns <= 3 ? 420 : 560));
  std::string html = head + "<h1>" + escape_html(page.title) + "</h1>\n" + ranking_table(page.ranking) +
                     "<div class=\"header\">\n";
  for (const auto& image : page.header_images)
    html += "<div><a href=\"" + escape_html(image) + "\"><img src=\"" + escape_html(image) + "\" alt=\"" +
            escape_html(image) + "\"></a></div>\n";
  html += "</div>\n<script type=\"application/json\" id=\"gallery-data\">" + script_safe(data.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)) + "</script>";
  return html + kBody;
}

}  // namespace fer
