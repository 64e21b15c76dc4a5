// index.html for an explanation batch: the methods ranked by faithfulness, a
// grid of the summary sheets (every method side by side for each face) with
// filters (true class, predicted class, misclassified only) and sorting
// (confidence, faithfulness). Self-contained: the data is embedded, links are
// relative, no network; it works from file://. The filter and sort state lives
// in the URL fragment, so a view can be bookmarked or shared:
//   index.html#true=happy&pred=sad&misclassified=1&sort=confidence-asc
#pragma once

#include <string>
#include <vector>

#include "fer/explain/faithfulness.h"

namespace fer {

struct GalleryCard {
  int index = 0;
  std::string source;
  std::string image;       // the summary sheet, relative to the page ("" for a failed item)
  std::string true_label;  // "" when unknown
  std::string predicted;   // "" for a failed item
  double confidence = -1;  // p(predicted); < 0 when not predicted
  // insertion AUC - deletion AUC of the page's faithfulness method (higher is
  // more faithful); NaN when not measured.
  double faithfulness = 0;
  std::string error;
};

struct GalleryPage {
  std::string title;
  std::vector<std::string> class_names;
  std::vector<std::string> header_images;  // shown above the grid (global maps, faithfulness plot), relative
  std::string faithfulness_method;         // which method `faithfulness` scores ("" when none)
  // The methods ranked by faithfulness over the batch (a table above the
  // grid); empty: not measured.
  std::vector<FaithfulnessReport::Rank> ranking;
  int panels = 3;  // panels per summary sheet: the cards widen to show them
  std::vector<GalleryCard> cards;
};

// The page as one HTML document (UTF-8).
std::string gallery_html(const GalleryPage& page);

}  // namespace fer
