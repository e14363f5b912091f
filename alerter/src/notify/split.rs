//! Packing a rendered notification into messages no longer than a platform's limit.
//!
//! The renderer gives a header, one section per alert and a footer. Messages are cut only
//! between sections; every message repeats the header and footer (each one can be read on
//! its own) and, when there are several, carries a `(i/n)` marker in its title and text. A
//! single section too long for any message is cut at a UTF-8 character boundary and ends
//! with `…`. Sizes are measured with a caller's cost function, because platforms count
//! differently (WeCom counts content bytes; DingTalk refuses request bodies over its limit,
//! where JSON escaping makes text longer).

/// What gets packed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Doc {
    pub title: String,
    pub header: String,
    pub sections: Vec<String>,
    pub footer: String,
}

/// One packed message.
#[derive(Clone, Debug, PartialEq)]
pub struct Part {
    /// The title, with ` (i/n)` when there are several parts.
    pub title: String,
    /// Header, sections and footer, blank-line separated, `(i/n)` first when several.
    pub text: String,
    /// The sections (possibly cut) this part holds.
    pub sections: Vec<String>,
}

/// The cut marker at the end of a section that did not fit.
pub const CUT: &str = "…";

/// Room kept for the `(i/n)` marker: enough for 999 parts.
const MARKER_ROOM: &str = "(999/999)\n\n";

/// Smallest room a section gets; below it the footer is dropped and the header cut.
const MIN_SECTION_ROOM: usize = 64;

/// Bytes of `s` as UTF-8: the cost for platforms that count content bytes.
pub fn utf8_len(s: &str) -> usize {
    s.len()
}

/// Bytes of `s` inside a JSON string (escapes included): the cost for platforms that limit
/// the request body.
pub fn json_len(s: &str) -> usize {
    s.chars()
        .map(|c| match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{08}' | '\u{0c}' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        })
        .sum()
}

/// Header, sections and footer joined by blank lines (empty pieces left out).
pub fn compose(header: &str, sections: &[String], footer: &str) -> String {
    let mut pieces: Vec<&str> = Vec::with_capacity(sections.len() + 2);
    for p in std::iter::once(header)
        .chain(sections.iter().map(String::as_str))
        .chain(std::iter::once(footer))
    {
        let p = p.trim_end();
        if !p.trim().is_empty() {
            pieces.push(p);
        }
    }
    pieces.join("\n\n")
}

/// The longest prefix of `s` (cut at a character boundary, plus [`CUT`]) for which
/// `fits(candidate)` holds; `CUT` alone when nothing fits.
fn cut_to_fit(s: &str, fits: &dyn Fn(&str) -> bool) -> String {
    let bounds: Vec<usize> = s
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(s.len()))
        .collect();
    // binary search the largest boundary index whose cut version fits
    let (mut lo, mut hi) = (0usize, bounds.len() - 1);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        let candidate = format!("{}{CUT}", &s[..bounds[mid]]);
        if fits(&candidate) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    format!("{}{CUT}", &s[..bounds[lo]])
}

/// Packs `doc` into parts whose text costs at most `limit` (by `cost`). Never loses a
/// section; only a section longer than a whole message is shortened.
pub fn pack(doc: &Doc, limit: usize, cost: &dyn Fn(&str) -> usize) -> Vec<Part> {
    let whole = compose(&doc.header, &doc.sections, &doc.footer);
    if cost(&whole) <= limit {
        return vec![Part {
            title: doc.title.clone(),
            text: whole,
            sections: doc.sections.clone(),
        }];
    }
    let budget = limit.saturating_sub(cost(MARKER_ROOM));
    // header and footer must leave room for a section: drop the footer, then cut the header
    let mut header = doc.header.clone();
    let mut footer = doc.footer.clone();
    let overhead = |h: &str, f: &str| cost(&compose(h, &["x".to_string()], f)) - cost("x");
    if overhead(&header, &footer) + MIN_SECTION_ROOM > budget {
        footer.clear();
    }
    if overhead(&header, &footer) + MIN_SECTION_ROOM > budget {
        let room = budget / 2;
        header = cut_to_fit(&header, &|h| cost(h) <= room);
    }
    let fits = |sections: &[String]| cost(&compose(&header, sections, &footer)) <= budget;

    let mut groups: Vec<Vec<String>> = Vec::new();
    let mut current: Vec<String> = Vec::new();
    for section in &doc.sections {
        current.push(section.clone());
        if fits(&current) {
            continue;
        }
        current.pop();
        if !current.is_empty() {
            groups.push(std::mem::take(&mut current));
            current.push(section.clone());
            if fits(&current) {
                continue;
            }
            current.pop();
        }
        // alone and still too long: cut it
        let cut = cut_to_fit(section, &|s| fits(&[s.to_string()]));
        groups.push(vec![cut]);
    }
    if !current.is_empty() || groups.is_empty() {
        groups.push(current);
    }
    let n = groups.len();
    groups
        .into_iter()
        .enumerate()
        .map(|(i, sections)| {
            let body = compose(&header, &sections, &footer);
            let (title, text) = if n > 1 {
                (
                    format!("{} ({}/{n})", doc.title, i + 1),
                    format!("({}/{n})\n\n{body}", i + 1),
                )
            } else {
                (doc.title.clone(), body)
            };
            Part {
                title,
                text,
                sections,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(sections: Vec<String>) -> Doc {
        Doc {
            title: "[告警:3] 磁盘空间不足".into(),
            header: "### [告警] 磁盘空间不足\n共 3 条告警".into(),
            sections,
            footer: "[查看全部告警](http://lookout/alerts)".into(),
        }
    }

    fn cjk_section(i: usize, chars: usize) -> String {
        format!(
            "#### 告警 {i}\n{}",
            "磁盘使用率过高，请立即处理。".repeat(chars / 14 + 1)
        )
    }

    #[test]
    fn a_small_doc_is_one_part_without_markers() {
        let d = doc(vec!["一".into(), "二".into()]);
        let parts = pack(&d, 4096, &utf8_len);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].title, d.title);
        assert!(!parts[0].text.contains("(1/"));
        assert_eq!(
            parts[0].text,
            format!("{}\n\n一\n\n二\n\n{}", d.header, d.footer)
        );
    }

    #[test]
    fn cjk_sections_split_between_sections_under_the_limit_with_markers() {
        let sections: Vec<String> = (0..10).map(|i| cjk_section(i, 200)).collect();
        let d = doc(sections.clone());
        let limit = 2048;
        let parts = pack(&d, limit, &utf8_len);
        assert!(parts.len() > 1);
        let n = parts.len();
        for (i, p) in parts.iter().enumerate() {
            assert!(p.text.len() <= limit, "part {i} is {} bytes", p.text.len());
            assert!(
                p.title.ends_with(&format!("({}/{n})", i + 1)),
                "{}",
                p.title
            );
            assert!(p.text.starts_with(&format!("({}/{n})", i + 1)));
            assert!(p.text.contains(&d.header), "every part keeps the header");
            assert!(p.text.contains(&d.footer));
        }
        // nothing lost, nothing cut, order kept
        let all: Vec<String> = parts.iter().flat_map(|p| p.sections.clone()).collect();
        assert_eq!(all, sections);
        for s in &sections {
            assert_eq!(
                parts.iter().filter(|p| p.text.contains(s.as_str())).count(),
                1
            );
        }
    }

    #[test]
    fn an_oversized_section_is_cut_at_a_char_boundary_with_a_marker() {
        let big = cjk_section(0, 3000); // ~9 KB of 3-byte characters
        let d = doc(vec!["短".into(), big.clone(), "尾".into()]);
        let limit = 1000;
        let parts = pack(&d, limit, &utf8_len);
        assert_eq!(parts.len(), 3);
        for p in &parts {
            assert!(p.text.len() <= limit);
            assert!(std::str::from_utf8(p.text.as_bytes()).is_ok());
        }
        let cut = &parts[1].sections[0];
        assert!(cut.ends_with(CUT));
        assert!(big.starts_with(cut.trim_end_matches(CUT)));
        assert!(cut.len() > limit / 2, "the cut keeps as much as fits");
        assert_eq!(parts[0].sections, vec!["短".to_string()]);
        assert_eq!(parts[2].sections, vec!["尾".to_string()]);
    }

    #[test]
    fn json_cost_counts_escapes_and_is_respected() {
        assert_eq!(json_len("a\"b\n"), 6);
        assert_eq!(json_len("告"), 3);
        let sections: Vec<String> = (0..30)
            .map(|i| format!("- \"line\" {i}\n- 第二行\n- 第三行"))
            .collect();
        let d = doc(sections);
        let parts = pack(&d, 600, &json_len);
        assert!(parts.len() > 1);
        for p in &parts {
            assert!(json_len(&p.text) <= 600);
        }
    }

    #[test]
    fn a_huge_header_is_cut_and_the_footer_dropped_rather_than_losing_sections() {
        let d = Doc {
            title: "t".into(),
            header: "头".repeat(1000),
            sections: vec!["a".into(), "b".into()],
            footer: "尾".repeat(1000),
        };
        let parts = pack(&d, 500, &utf8_len);
        let all: Vec<String> = parts.iter().flat_map(|p| p.sections.clone()).collect();
        assert_eq!(all, vec!["a".to_string(), "b".to_string()]);
        for p in &parts {
            assert!(p.text.len() <= 500);
            assert!(!p.text.contains('尾'));
        }
    }
}
