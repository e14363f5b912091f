//! English and Chinese UI text. Each call site carries both strings (`tr("Services", "服务")`),
//! so a page and its translation are read and changed together.
//!
//! The language is chosen once per page load: `ui.language` from the config when set, else the
//! browser's `Accept-Language`. The server writes it into `<html lang>`, and the browser half
//! reads it back from there, so both render the same text.

use leptos::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    #[default]
    En,
    Zh,
}

impl Lang {
    /// The `lang` attribute value.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh-CN",
        }
    }

    /// Parses a config value or an `<html lang>` value (`zh`, `zh-CN`, `en-US`, ...).
    pub fn parse(s: &str) -> Option<Lang> {
        let s = s.trim().to_ascii_lowercase();
        if s.starts_with("zh") {
            Some(Lang::Zh)
        } else if s.starts_with("en") {
            Some(Lang::En)
        } else {
            None
        }
    }

    /// The first of English or Chinese in an `Accept-Language` header, by preference order
    /// (q-values honoured); English when neither is named.
    pub fn from_accept_language(header: &str) -> Lang {
        let mut best: Option<(f32, usize, Lang)> = None;
        for (i, part) in header.split(',').enumerate() {
            let mut it = part.split(';');
            let tag = it.next().unwrap_or("");
            let q = it
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            if let Some(lang) = Lang::parse(tag) {
                let better = match best {
                    None => true,
                    Some((bq, bi, _)) => q > bq || (q == bq && i < bi),
                };
                if better && q > 0.0 {
                    best = Some((q, i, lang));
                }
            }
        }
        best.map_or(Lang::En, |(_, _, l)| l)
    }
}

/// The text for the page's language.
pub fn tr(en: &'static str, zh: &'static str) -> &'static str {
    match use_context::<Lang>().unwrap_or_default() {
        Lang::En => en,
        Lang::Zh => zh,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_preferred_of_the_two() {
        assert_eq!(
            Lang::from_accept_language("zh-CN,zh;q=0.9,en;q=0.8"),
            Lang::Zh
        );
        assert_eq!(
            Lang::from_accept_language("en-US,en;q=0.9,zh;q=0.5"),
            Lang::En
        );
        assert_eq!(
            Lang::from_accept_language("de-DE,zh;q=0.7,en;q=0.9"),
            Lang::En
        );
        assert_eq!(Lang::from_accept_language("fr"), Lang::En);
        assert_eq!(Lang::from_accept_language(""), Lang::En);
        assert_eq!(Lang::parse("zh-TW"), Some(Lang::Zh));
    }
}
