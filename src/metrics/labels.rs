//! Label values with a bounded set: model names admitted only once an upstream accepted them,
//! key ids formatted without allocating, status classes.

use std::collections::HashSet;
use std::io::Write as _;
use std::sync::RwLock;

/// Label for anything outside the bounded set.
pub const OTHER: &str = "other";

/// A capped set of label values. A value joins only when `accepted` (an upstream answered
/// 2xx for it) and while there is room; everything else is [`OTHER`]. Reading a known value
/// takes an uncontended read lock and allocates nothing.
#[derive(Debug)]
pub struct BoundedLabels {
    known: RwLock<HashSet<Box<str>>>,
    capacity: usize,
}

impl BoundedLabels {
    pub fn new(capacity: usize) -> Self {
        BoundedLabels {
            known: RwLock::new(HashSet::new()),
            capacity,
        }
    }

    pub fn label<'a>(&self, value: &'a str, accepted: bool) -> &'a str {
        if let Ok(known) = self.known.read() {
            if known.contains(value) {
                return value;
            }
            if !accepted || known.len() >= self.capacity {
                return OTHER;
            }
        }
        let Ok(mut known) = self.known.write() else {
            return OTHER;
        };
        if known.len() >= self.capacity {
            return OTHER;
        }
        known.insert(Box::from(value));
        value
    }
}

/// A key id as a label, written into a stack buffer.
#[derive(Default)]
pub struct KeyDigits([u8; 20]);

impl KeyDigits {
    pub fn format(&mut self, id: Option<i64>) -> &str {
        let Some(id) = id else {
            return "none";
        };
        let capacity = self.0.len();
        let remaining = {
            let mut cursor = &mut self.0[..];
            if write!(cursor, "{id}").is_err() {
                return OTHER;
            }
            cursor.len()
        };
        std::str::from_utf8(&self.0[..capacity - remaining]).unwrap_or(OTHER)
    }
}

/// Status classes as labels, in [`status_class_index`]'s order.
pub const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", OTHER];

/// Where `status`'s class sits in [`STATUS_CLASSES`].
pub fn status_class_index(status: u16) -> usize {
    match status / 100 {
        class @ 1..=5 => usize::from(class - 1),
        _ => STATUS_CLASSES.len() - 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_join_only_when_accepted_and_while_there_is_room() {
        let labels = BoundedLabels::new(2);
        assert_eq!(labels.label("made-up", false), OTHER);
        assert_eq!(labels.label("a", true), "a");
        // Once known, a model keeps its label even for failed requests.
        assert_eq!(labels.label("a", false), "a");
        assert_eq!(labels.label("b", true), "b");
        assert_eq!(labels.label("c", true), OTHER, "the set is full");
        assert_eq!(labels.label("b", false), "b");
    }

    #[test]
    fn key_ids_format_on_the_stack() {
        let mut digits = KeyDigits::default();
        assert_eq!(digits.format(None), "none");
        assert_eq!(digits.format(Some(42)), "42");
        assert_eq!(digits.format(Some(7)), "7");
        assert_eq!(digits.format(Some(i64::MIN)), "-9223372036854775808");
        assert_eq!(digits.format(Some(i64::MAX)), "9223372036854775807");
    }

    #[test]
    fn statuses_fall_into_classes() {
        for (status, class) in [
            (101, "1xx"),
            (200, "2xx"),
            (304, "3xx"),
            (404, "4xx"),
            (499, "4xx"),
            (503, "5xx"),
            (99, OTHER),
            (600, OTHER),
        ] {
            assert_eq!(STATUS_CLASSES[status_class_index(status)], class);
        }
    }
}
