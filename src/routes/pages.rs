use crate::views::IndexPage;

/// `GET /`: the product's front page.
pub async fn index() -> IndexPage {
    IndexPage
}
