//! Static assets compiled by `build.rs`, embedded in the binary and served with
//! the best pre-compressed variant the client accepts.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use rust_embed::RustEmbed;

use crate::error::AppError;

include!(concat!(env!("OUT_DIR"), "/asset_manifest.rs"));

#[derive(RustEmbed)]
#[folder = "$OUT_DIR/assets"]
struct Embedded;

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Brotli,
    Gzip,
    Identity,
}

impl Encoding {
    fn suffix(self) -> &'static str {
        match self {
            Self::Brotli => ".br",
            Self::Gzip => ".gz",
            Self::Identity => "",
        }
    }

    fn header(self) -> &'static str {
        match self {
            Self::Brotli => "br",
            Self::Gzip => "gzip",
            Self::Identity => "identity",
        }
    }
}

/// Reads `Accept-Encoding` (with q-values) and returns the variants the client
/// takes, best first. Identity is always acceptable as a last resort.
fn acceptable(accept: Option<&str>) -> Vec<Encoding> {
    let mut br = None;
    let mut gzip = None;
    let mut star = None;
    for part in accept.unwrap_or("").split(',') {
        let mut pieces = part.split(';');
        let name = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = pieces
            .find_map(|p| p.trim().strip_prefix("q="))
            .and_then(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        match name.as_str() {
            "br" => br = Some(q),
            "gzip" | "x-gzip" => gzip = Some(q),
            "*" => star = Some(q),
            _ => {}
        }
    }
    let br = br.or(star).unwrap_or(0.0);
    let gzip = gzip.or(star).unwrap_or(0.0);
    let mut ranked = Vec::with_capacity(3);
    if br > 0.0 && br >= gzip {
        ranked.push(Encoding::Brotli);
    }
    if gzip > 0.0 {
        ranked.push(Encoding::Gzip);
    }
    if br > 0.0 && br < gzip {
        ranked.push(Encoding::Brotli);
    }
    ranked.push(Encoding::Identity);
    ranked
}

/// `GET /static/{file}`: only the hashed names from the manifest are served, so
/// the compressed variants cannot be fetched as files of their own.
pub async fn serve(req: HttpRequest, file: web::Path<String>) -> Result<HttpResponse, AppError> {
    let name = file.into_inner();
    if !ALL.iter().any(|(_, hashed)| *hashed == name) {
        return Err(AppError::NotFound);
    }
    respond(&req, &name, IMMUTABLE)
}

/// How long other sites may cache the widget under its stable address: short, so
/// a new release reaches every embedding site within minutes.
const STABLE: &str = "public, max-age=300";

/// `GET /widget.js` and `/widget.css`: the widget's stable addresses for other
/// sites' `<script>` tags, answering with the current hashed build.
pub async fn serve_stable(req: HttpRequest) -> Result<HttpResponse, AppError> {
    let logical = req.path().trim_start_matches('/');
    let (_, hashed) = ALL
        .iter()
        .find(|(source, _)| *source == logical)
        .ok_or(AppError::NotFound)?;
    respond(&req, hashed, STABLE)
}

fn respond(
    req: &HttpRequest,
    name: &str,
    cache_control: &'static str,
) -> Result<HttpResponse, AppError> {
    let accept = req
        .headers()
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok());
    let (encoding, asset) = acceptable(accept)
        .into_iter()
        .find_map(|enc| Embedded::get(&format!("{name}{}", enc.suffix())).map(|a| (enc, a)))
        .ok_or(AppError::NotFound)?;

    // The hash in the name already identifies the content; the variant makes the tag exact.
    let etag = format!("\"{}-{}\"", name, encoding.header());
    let mime = mime_guess::from_path(name).first_or_octet_stream();
    let content_type = if mime.type_() == "text" || mime.essence_str() == "application/javascript" {
        format!("{}; charset=utf-8", mime.essence_str())
    } else {
        mime.essence_str().to_string()
    };

    let not_modified = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut builder = if not_modified {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    builder
        .insert_header((header::CACHE_CONTROL, cache_control))
        .insert_header((header::VARY, "Accept-Encoding"))
        .insert_header((header::ETAG, etag))
        // Always explicit (even "identity") so the compression middleware leaves it alone.
        .insert_header((header::CONTENT_ENCODING, encoding.header()));
    if not_modified {
        return Ok(builder.finish());
    }
    Ok(builder
        .insert_header((header::CONTENT_TYPE, content_type))
        .body(match asset.data {
            std::borrow::Cow::Borrowed(bytes) => actix_web::body::BoxBody::new(bytes),
            std::borrow::Cow::Owned(bytes) => actix_web::body::BoxBody::new(bytes),
        }))
}

#[cfg(test)]
mod tests {
    use super::{Encoding, acceptable};

    #[test]
    fn prefers_brotli_then_gzip() {
        assert_eq!(acceptable(Some("gzip, deflate, br"))[0], Encoding::Brotli);
        assert_eq!(acceptable(Some("gzip"))[0], Encoding::Gzip);
        assert_eq!(acceptable(None), vec![Encoding::Identity]);
    }

    #[test]
    fn honours_q_values_and_refusals() {
        assert_eq!(acceptable(Some("br;q=0, gzip"))[0], Encoding::Gzip);
        assert_eq!(acceptable(Some("br;q=0.2, gzip;q=0.8"))[0], Encoding::Gzip);
        assert_eq!(acceptable(Some("*"))[0], Encoding::Brotli);
        assert_eq!(acceptable(Some("identity"))[0], Encoding::Identity);
    }

    #[test]
    fn every_manifest_entry_is_embedded() {
        assert!(!super::ALL.is_empty());
        for (_, hashed) in super::ALL {
            assert!(super::Embedded::get(hashed).is_some(), "{hashed} missing");
        }
    }
}
