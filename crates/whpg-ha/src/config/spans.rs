//! Where each key sits in the source text, so that errors can name a line.
//!
//! Built from toml's spanned document tree; maps a dotted key path (`vip[0].label`) to its line and a
//! byte span back to the key path. It knows nothing about which keys are valid.

use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// Key paths and their positions in one configuration text.
#[derive(Debug, Default)]
pub(crate) struct SpanIndex {
    entries: Vec<Entry>,
    line_starts: Vec<usize>,
}

#[derive(Debug)]
struct Entry {
    path: String,
    /// Span of the key text (table header or `key =`), absent for array elements.
    key: Option<Range<usize>>,
    value: Range<usize>,
}

/// Writes one key segment of a path: bare when TOML allows it, quoted otherwise.
pub(crate) fn segment(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_string()
    } else {
        crate::config::error::quote(key)
    }
}

impl SpanIndex {
    /// Indexes `text`; a text that does not parse yields an index that still knows line starts.
    pub(crate) fn build(text: &str) -> Self {
        let mut index = SpanIndex {
            entries: Vec::new(),
            line_starts: std::iter::once(0)
                .chain(text.match_indices('\n').map(|(i, _)| i + 1))
                .collect(),
        };
        if let Ok(doc) = DeTable::parse(text) {
            index.walk_table(doc.get_ref(), "");
        }
        index
    }

    fn walk_table(&mut self, table: &DeTable<'_>, prefix: &str) {
        for (key, value) in table.iter() {
            let path = if prefix.is_empty() {
                segment(key.get_ref())
            } else {
                format!("{prefix}.{}", segment(key.get_ref()))
            };
            self.entries.push(Entry {
                path: path.clone(),
                key: Some(key.span()),
                value: value.span(),
            });
            self.walk_value(value, &path);
        }
    }

    fn walk_value(&mut self, value: &Spanned<DeValue<'_>>, path: &str) {
        match value.get_ref() {
            DeValue::Table(table) => self.walk_table(table, path),
            DeValue::Array(array) => {
                for (i, element) in array.iter().enumerate() {
                    let element_path = format!("{path}[{i}]");
                    self.entries.push(Entry {
                        path: element_path.clone(),
                        key: None,
                        value: element.span(),
                    });
                    self.walk_value(element, &element_path);
                }
            }
            _ => {}
        }
    }

    /// 1-based line of a byte offset.
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        match self.line_starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }

    /// Line of `path`, or of its nearest ancestor that is in the file (a missing key points at its table).
    pub(crate) fn line(&self, path: &str) -> Option<usize> {
        let mut candidate = path;
        loop {
            if let Some(entry) = self.entries.iter().find(|e| e.path == candidate) {
                let start = entry.key.as_ref().unwrap_or(&entry.value).start;
                return Some(self.line_of(start));
            }
            let cut = candidate.rfind(['.', '['])?;
            candidate = &candidate[..cut];
        }
    }

    /// The innermost key path whose key or value span covers `span`.
    pub(crate) fn path_at(&self, span: &Range<usize>) -> Option<&str> {
        let covers = |r: &Range<usize>| r.start <= span.start && span.end <= r.end.max(r.start + 1);
        self.entries
            .iter()
            .filter(|e| e.key.as_ref().is_some_and(covers) || covers(&e.value))
            .min_by_key(|e| {
                let key_len = e.key.as_ref().filter(|k| covers(k)).map(|k| k.len());
                key_len.unwrap_or(e.value.len())
            })
            .map(|e| e.path.as_str())
    }
}
