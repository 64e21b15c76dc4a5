// The explanation gallery (index.html), rendered by a real browser: Chromium in
// headless mode runs the page's script and dumps the resulting DOM, and the
// tests read which cards the filters left visible and in which order.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <regex>

#include "fer/report/explain/gallery.h"
#include "test_util.h"

// A named namespace, not an anonymous one: the TEST_F classes derive from the
// fixture, and GCC warns (-Wsubobject-linkage) when a unity batch includes a
// file whose fixture has internal linkage.
namespace gallery_test {

struct CardState {
  int index;
  bool hidden;
};

class GalleryInBrowser : public ::testing::Test {
 protected:
  void SetUp() override {
    chromium_ = fer_test::find_chromium();
    if (chromium_.empty()) GTEST_SKIP() << "no chromium on PATH (set FER_CHROMIUM): the gallery is not rendered";
    fer::GalleryPage page;
    page.title = "test </title><b>gallery";
    page.class_names = {"angry", "happy", "sad"};
    page.faithfulness_method = "shap";
    auto card = [](int index, const char* truth, const char* pred, double confidence, double faithfulness) {
      fer::GalleryCard c;
      c.index = index;
      c.source = "photo" + std::to_string(index) + ".png";
      c.image = c.source;
      c.true_label = truth;
      c.predicted = pred;
      c.confidence = confidence;
      c.faithfulness = faithfulness;
      return c;
    };
    page.cards = {card(0, "happy", "happy", 0.9, 0.30), card(1, "sad", "happy", 0.6, 0.10),
                  card(2, "sad", "sad", 0.7, NAN),      card(3, "angry", "sad", 0.4, 0.50),
                  card(4, "sad", "angry", 0.8, -0.2),   card(5, "happy", "", -1, NAN)};
    page.cards[5].image.clear();
    page.cards[5].source = "broken</script><script>document.body.remove()</script>.png";
    page.cards[5].error = "cannot decode image";
    std::ofstream(dir_ / "index.html") << fer::gallery_html(page);
  }

  // The cards of the rendered page, in DOM order.
  std::vector<CardState> render(const std::string& fragment) {
    dom_ = fer_test::rendered_dom(chromium_, "file://" + (dir_ / "index.html") + fragment, dir_.path());
    std::vector<CardState> cards;
    const std::regex tag(R"re(<div class="card[^"]*" data-index="(\d+)"[^>]*>)re");
    for (std::sregex_iterator it(dom_.begin(), dom_.end(), tag), end; it != end; ++it)
      cards.push_back({std::stoi((*it)[1]), it->str().find(" hidden") != std::string::npos});
    return cards;
  }

  static std::vector<int> visible(const std::vector<CardState>& cards) {
    std::vector<int> out;
    for (const auto& c : cards)
      if (!c.hidden) out.push_back(c.index);
    return out;
  }
  static std::vector<int> order(const std::vector<CardState>& cards) {
    std::vector<int> out;
    for (const auto& c : cards) out.push_back(c.index);
    return out;
  }

  fer_test::TempDir dir_;
  std::string chromium_, dom_;
};

}  // namespace gallery_test

using gallery_test::GalleryInBrowser;

TEST_F(GalleryInBrowser, ShowsEveryCardInInputOrderByDefault) {
  const auto cards = render("");
  EXPECT_EQ(order(cards), (std::vector<int>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(visible(cards), (std::vector<int>{0, 1, 2, 3, 4, 5}));
  EXPECT_NE(dom_.find("6 of 6 shown"), std::string::npos);
  // The hostile file name stayed text: the page still has its body and its summary images.
  EXPECT_NE(dom_.find("document.body.remove()"), std::string::npos);
  EXPECT_NE(dom_.find("src=\"photo3.png\""), std::string::npos);
  EXPECT_NE(dom_.find("cannot decode image"), std::string::npos);
}

TEST_F(GalleryInBrowser, FiltersHideTheRightCards) {
  EXPECT_EQ(visible(render("#pred=happy")), (std::vector<int>{0, 1}));
  EXPECT_EQ(visible(render("#true=sad")), (std::vector<int>{1, 2, 4}));
  EXPECT_EQ(visible(render("#true=sad&misclassified=1")), (std::vector<int>{1, 4}));
  EXPECT_EQ(visible(render("#misclassified=1")), (std::vector<int>{1, 3, 4}));  // the failed card has no prediction
  EXPECT_NE(dom_.find("3 of 6 shown"), std::string::npos);
}

TEST_F(GalleryInBrowser, SortsByConfidenceAndFaithfulnessWithUnmeasuredLast) {
  EXPECT_EQ(order(render("#sort=confidence-desc")), (std::vector<int>{0, 4, 2, 1, 3, 5}));
  EXPECT_EQ(order(render("#sort=confidence-asc")), (std::vector<int>{3, 1, 2, 4, 0, 5}));
  EXPECT_EQ(order(render("#sort=faithfulness-desc")), (std::vector<int>{3, 0, 1, 4, 2, 5}));
  const auto worst_first = render("#sort=faithfulness-asc&pred=sad");
  EXPECT_EQ(order(worst_first), (std::vector<int>{4, 1, 0, 3, 2, 5}));
  EXPECT_EQ(visible(worst_first), (std::vector<int>{3, 2}));
}

TEST(Gallery, DataCannotCloseTheScriptElement) {
  fer::GalleryPage page;
  page.title = "t";
  fer::GalleryCard card;
  card.source = "a</script>b";
  page.cards = {card};
  const auto html = fer::gallery_html(page);
  EXPECT_EQ(html.find("a</script>b"), std::string::npos);
  EXPECT_NE(html.find(R"(a<\/script>b)"), std::string::npos);
}
