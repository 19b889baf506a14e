//! Labels, label sets and label selectors (Gazette's `protocol.Label`,
//! `LabelSet` and `LabelSelector`).
//!
//! A [`LabelSet`] is a set of `name=value` pairs kept **sorted and unique by
//! (name, value)**; one name may carry several values. Journal specs carry
//! labels (`content-type=application/x-ndjson`), and every journal has a small
//! label set of *registers* that appends check and update atomically.
//!
//! A [`LabelSelector`] picks label sets with Gazette's rules:
//! - every name in `include` must be present with one of the included values
//!   (several values of one name are alternatives, OR); an included label with
//!   an **empty value matches any value** of that name;
//! - no name in `exclude` may be present with an excluded value (an empty
//!   excluded value excludes the name whatever its value).
//!
//! ```
//! use weir::broker::spec::{LabelSelector, LabelSet};
//!
//! let set: LabelSet = "app.gazette.dev/message-type=stream_sum.Chunk,content-type=application/x-ndjson"
//!     .parse()
//!     .unwrap();
//! let selector: LabelSelector = "app.gazette.dev/message-type=stream_sum.Chunk,!retired".parse().unwrap();
//! assert!(selector.matches(&set));
//! ```
//!
//! # Selector grammar
//!
//! [`LabelSelector`] parses gazctl-style selectors: a comma-separated list of
//! expressions, with optional spaces around each token:
//!
//! | expression | meaning |
//! |---|---|
//! | `name=value` (or `name==value`) | include `name` with `value` |
//! | `name!=value` | exclude `name` with `value` |
//! | `name in (v1,v2)` | include `name` with `v1` or `v2` |
//! | `name notin (v1,v2)` (or `not in`) | exclude `name` with `v1` and with `v2` |
//! | `name` | include `name` with any value (it must exist) |
//! | `!name` | exclude `name` with any value (it must not exist) |
//!
//! The empty string is the empty selector, which matches every set.
//!
//! # Alphabets
//!
//! Label names are 2–64 bytes of ASCII letters, digits and `-_+/.`. Values are
//! at most 1024 bytes of ASCII letters, digits and `-_+/.=%:@`. Spaces,
//! commas, parentheses, `!` and every character at or below `#` are never
//! allowed (Gazette reserves them), which keeps the selector grammar
//! unambiguous. A set may not hold both an empty and a non-empty value for one
//! name.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::spec::SpecError;

/// Shortest label name, in bytes.
pub const MIN_LABEL_NAME_LEN: usize = 2;
/// Longest label name, in bytes.
pub const MAX_LABEL_NAME_LEN: usize = 64;
/// Longest label value, in bytes.
pub const MAX_LABEL_VALUE_LEN: usize = 1024;

const NAME_SYMBOLS: &str = "-_+/.";
const VALUE_SYMBOLS: &str = "-_+/.=%:@";

/// One `name=value` pair.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Label {
    /// The label's name, e.g. `content-type`.
    pub name: String,
    /// The label's value; empty in a selector means "any value".
    #[serde(default)]
    pub value: String,
}

impl Label {
    /// A label; see [`Label::validate`] for the rules it must follow.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }

    /// Checks the name and value alphabets and lengths.
    pub fn validate(&self) -> Result<(), SpecError> {
        let invalid = |reason: String| SpecError::InvalidLabel {
            label: format!("{}={}", self.name, self.value),
            reason,
        };
        if !(MIN_LABEL_NAME_LEN..=MAX_LABEL_NAME_LEN).contains(&self.name.len()) {
            return Err(invalid(format!(
                "name length {} is not within {MIN_LABEL_NAME_LEN}..={MAX_LABEL_NAME_LEN}",
                self.name.len()
            )));
        }
        if let Some(c) = self.name.chars().find(|c| !is_name_char(*c)) {
            return Err(invalid(format!("name has invalid character {c:?}")));
        }
        if self.value.len() > MAX_LABEL_VALUE_LEN {
            return Err(invalid(format!(
                "value length {} exceeds {MAX_LABEL_VALUE_LEN}",
                self.value.len()
            )));
        }
        if let Some(c) = self.value.chars().find(|c| !is_value_char(*c)) {
            return Err(invalid(format!("value has invalid character {c:?}")));
        }
        Ok(())
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.value)
    }
}

/// Whether `c` may appear in a label name.
pub fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || NAME_SYMBOLS.contains(c)
}

/// Whether `c` may appear in a label value.
pub fn is_value_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || VALUE_SYMBOLS.contains(c)
}

/// Labels sorted and unique by (name, value).
///
/// Construction never fails; [`LabelSet::validate`] checks the alphabets.
/// Deserialization (a list of `{name, value}` objects, as in Gazette's YAML)
/// sorts, de-duplicates and validates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<Label>", into = "Vec<Label>")]
pub struct LabelSet {
    labels: Vec<Label>,
}

impl LabelSet {
    /// The empty set.
    pub fn new() -> Self {
        LabelSet::default()
    }

    /// Number of labels (counting each value of a name).
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the set holds no label.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Labels in (name, value) order.
    pub fn iter(&self) -> impl Iterator<Item = &Label> {
        self.labels.iter()
    }

    /// The first value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values(name).next()
    }

    /// All values of `name`, in order.
    pub fn values<'s>(&'s self, name: &str) -> impl Iterator<Item = &'s str> + use<'s> {
        let start = self.labels.partition_point(|l| l.name.as_str() < name);
        let len = self.labels[start..].partition_point(|l| l.name == name);
        self.labels[start..start + len]
            .iter()
            .map(|l| l.value.as_str())
    }

    /// Whether `name` is present with `value`.
    pub fn contains(&self, name: &str, value: &str) -> bool {
        self.labels
            .binary_search_by(|l| (l.name.as_str(), l.value.as_str()).cmp(&(name, value)))
            .is_ok()
    }

    /// Adds `name=value`, keeping other values of `name`. Returns whether the
    /// label was new.
    pub fn insert(&mut self, name: impl AsRef<str>, value: impl AsRef<str>) -> bool {
        let label = Label::new(name.as_ref(), value.as_ref());
        match self.labels.binary_search(&label) {
            Ok(_) => false,
            Err(index) => {
                self.labels.insert(index, label);
                true
            }
        }
    }

    /// Sets `name` to the single value `value`, replacing its other values.
    pub fn set(&mut self, name: impl AsRef<str>, value: impl AsRef<str>) {
        self.remove(name.as_ref());
        self.insert(name, value);
    }

    /// Removes every value of `name`. Returns whether anything was removed.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.labels.len();
        self.labels.retain(|l| l.name != name);
        before != self.labels.len()
    }

    /// Gazette's `UnionLabelSets(self, other)`: every name of either set; where
    /// both have a name, the values of `self` win.
    pub fn union(&self, other: &LabelSet) -> LabelSet {
        let mut labels = self.labels.clone();
        labels.extend(
            other
                .labels
                .iter()
                .filter(|l| self.get(&l.name).is_none())
                .cloned(),
        );
        labels.sort();
        LabelSet { labels }
    }

    /// Gazette's `SubtractLabelSet(self, other)`: the names of `self` whose
    /// values are not exactly the values `other` gives that name.
    pub fn subtract(&self, other: &LabelSet) -> LabelSet {
        let labels = self
            .labels
            .iter()
            .filter(|l| !self.values(&l.name).eq(other.values(&l.name)))
            .cloned()
            .collect();
        LabelSet { labels }
    }

    /// Checks every label, and that no name has both an empty and a non-empty
    /// value.
    pub fn validate(&self) -> Result<(), SpecError> {
        for label in &self.labels {
            label.validate()?;
        }
        for pair in self.labels.windows(2) {
            if pair[0].name == pair[1].name && pair[0].value.is_empty() {
                return Err(SpecError::InvalidLabel {
                    label: pair[1].to_string(),
                    reason: "name has both an empty and a non-empty value".into(),
                });
            }
        }
        Ok(())
    }

    /// Distinct names, in order.
    fn names(&self) -> impl Iterator<Item = &str> {
        let mut last: Option<&str> = None;
        self.labels.iter().filter_map(move |l| {
            if last == Some(l.name.as_str()) {
                None
            } else {
                last = Some(l.name.as_str());
                last
            }
        })
    }
}

impl<'a> IntoIterator for &'a LabelSet {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;

    fn into_iter(self) -> Self::IntoIter {
        self.labels.iter()
    }
}

impl FromIterator<Label> for LabelSet {
    fn from_iter<I: IntoIterator<Item = Label>>(iter: I) -> Self {
        let mut labels: Vec<Label> = iter.into_iter().collect();
        labels.sort();
        labels.dedup();
        LabelSet { labels }
    }
}

impl<N: Into<String>, V: Into<String>> FromIterator<(N, V)> for LabelSet {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        iter.into_iter().map(|(n, v)| Label::new(n, v)).collect()
    }
}

impl TryFrom<Vec<Label>> for LabelSet {
    type Error = SpecError;

    fn try_from(labels: Vec<Label>) -> Result<Self, SpecError> {
        let set: LabelSet = labels.into_iter().collect();
        set.validate()?;
        Ok(set)
    }
}

impl From<LabelSet> for Vec<Label> {
    fn from(set: LabelSet) -> Self {
        set.labels
    }
}

/// `a=b,c=d`, in order.
impl fmt::Display for LabelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, label) in self.labels.iter().enumerate() {
            if index != 0 {
                f.write_str(",")?;
            }
            write!(f, "{label}")?;
        }
        Ok(())
    }
}

/// Parses `a=b,c=d` (the [`Display`](fmt::Display) form; `a=` is an empty
/// value), then validates.
impl FromStr for LabelSet {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, SpecError> {
        let mut set = LabelSet::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, value)) = part.split_once('=') else {
                return Err(SpecError::InvalidLabel {
                    label: part.to_string(),
                    reason: "expected name=value".into(),
                });
            };
            set.insert(name.trim(), value.trim());
        }
        set.validate()?;
        Ok(set)
    }
}

/// Selects label sets: see the [module docs](self) for the matching rules and
/// the grammar.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LabelSelector {
    /// Labels that must be present (one value of each name suffices).
    #[serde(default)]
    pub include: LabelSet,
    /// Labels that must not be present.
    #[serde(default)]
    pub exclude: LabelSet,
}

impl LabelSelector {
    /// The selector that matches every set.
    pub fn all() -> Self {
        LabelSelector::default()
    }

    /// Whether `set` is selected.
    pub fn matches(&self, set: &LabelSet) -> bool {
        let matched = |sel: &LabelSet, name: &str| {
            let mut present = set.values(name).peekable();
            if present.peek().is_none() {
                return false;
            }
            if sel.values(name).any(str::is_empty) {
                return true;
            }
            present.any(|v| sel.contains(name, v))
        };
        self.include
            .names()
            .all(|name| matched(&self.include, name))
            && !self
                .exclude
                .names()
                .any(|name| matched(&self.exclude, name))
    }

    /// Checks both sets, and that `prefix` meta-label values end in `/`.
    pub fn validate(&self) -> Result<(), SpecError> {
        self.include.validate()?;
        self.exclude.validate()?;
        for set in [&self.include, &self.exclude] {
            if let Some(bad) = set
                .values(super::spec::META_PREFIX)
                .find(|v| !v.ends_with('/'))
            {
                return Err(SpecError::InvalidLabel {
                    label: format!("{}={bad}", super::spec::META_PREFIX),
                    reason: "a prefix selector must end in '/'".into(),
                });
            }
        }
        Ok(())
    }
}

/// The canonical selector string (Gazette's `LabelSelector.String`), which
/// parses back to an equal selector.
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (set, exclude) in [(&self.include, false), (&self.exclude, true)] {
            for name in set.names() {
                if !first {
                    f.write_str(",")?;
                }
                first = false;
                let values: Vec<&str> = set.values(name).collect();
                match (values.as_slice(), exclude) {
                    ([""], false) => write!(f, "{name}")?,
                    ([""], true) => write!(f, "!{name}")?,
                    ([value], false) => write!(f, "{name}={value}")?,
                    ([value], true) => write!(f, "{name}!={value}")?,
                    (values, exclude) => {
                        let op = if exclude { "notin" } else { "in" };
                        write!(f, "{name} {op} ({})", values.join(","))?;
                    }
                }
            }
        }
        Ok(())
    }
}

impl FromStr for LabelSelector {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, SpecError> {
        SelectorParser { input: s, rest: s }.parse()
    }
}

/// A hand-written recursive-descent parser for the grammar in the module docs.
struct SelectorParser<'a> {
    input: &'a str,
    rest: &'a str,
}

impl<'a> SelectorParser<'a> {
    fn parse(mut self) -> Result<LabelSelector, SpecError> {
        let mut selector = LabelSelector::default();
        self.skip_spaces();
        if self.rest.is_empty() {
            return Ok(selector);
        }
        loop {
            self.expression(&mut selector)?;
            self.skip_spaces();
            if self.rest.is_empty() {
                break;
            }
            self.expect(",")?;
        }
        selector.validate()?;
        Ok(selector)
    }

    fn expression(&mut self, selector: &mut LabelSelector) -> Result<(), SpecError> {
        self.skip_spaces();
        if self.eat("!") {
            let name = self.name()?;
            selector.exclude.insert(name, "");
            return Ok(());
        }
        let name = self.name()?;
        self.skip_spaces();
        if self.eat("!=") {
            let value = self.value()?;
            selector.exclude.insert(name, value);
        } else if self.eat("=") {
            self.eat("=");
            let value = self.value()?;
            selector.include.insert(name, value);
        } else if self.keyword("notin") || self.keywords("not", "in") {
            for value in self.value_list()? {
                selector.exclude.insert(name, value);
            }
        } else if self.keyword("in") {
            for value in self.value_list()? {
                selector.include.insert(name, value);
            }
        } else {
            selector.include.insert(name, "");
        }
        Ok(())
    }

    fn value_list(&mut self) -> Result<Vec<&'a str>, SpecError> {
        self.skip_spaces();
        self.expect("(")?;
        let mut values = Vec::new();
        loop {
            values.push(self.value()?);
            self.skip_spaces();
            if self.eat(")") {
                return Ok(values);
            }
            self.expect(",")?;
        }
    }

    fn name(&mut self) -> Result<&'a str, SpecError> {
        self.skip_spaces();
        let token = self.take_while(is_name_char);
        if token.is_empty() {
            return Err(self.error("expected a label name"));
        }
        Ok(token)
    }

    fn value(&mut self) -> Result<&'a str, SpecError> {
        self.skip_spaces();
        let token = self.take_while(is_value_char);
        if token.is_empty() {
            return Err(self.error("expected a label value"));
        }
        Ok(token)
    }

    /// Consumes `word` if it is the next whole token (followed by a space,
    /// `(` or the end).
    fn keyword(&mut self, word: &str) -> bool {
        let saved = self.rest;
        self.skip_spaces();
        if let Some(after) = self.rest.strip_prefix(word)
            && !after.starts_with(is_name_char)
        {
            self.rest = after;
            return true;
        }
        self.rest = saved;
        false
    }

    /// Consumes `first` then `second`, or nothing.
    fn keywords(&mut self, first: &str, second: &str) -> bool {
        let saved = self.rest;
        if self.keyword(first) && self.keyword(second) {
            return true;
        }
        self.rest = saved;
        false
    }

    fn take_while(&mut self, keep: fn(char) -> bool) -> &'a str {
        let end = self
            .rest
            .find(|c: char| !keep(c))
            .unwrap_or(self.rest.len());
        let (token, rest) = self.rest.split_at(end);
        self.rest = rest;
        token
    }

    fn skip_spaces(&mut self) {
        self.rest = self.rest.trim_start();
    }

    fn eat(&mut self, token: &str) -> bool {
        match self.rest.strip_prefix(token) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn expect(&mut self, token: &str) -> Result<(), SpecError> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(self.error(&format!("expected {token:?}")))
        }
    }

    fn error(&self, what: &str) -> SpecError {
        let at = self.input.len() - self.rest.len();
        SpecError::InvalidSelector {
            selector: self.input.to_string(),
            reason: format!("{what} at byte {at}"),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use proptest::prelude::*;

    fn set(s: &str) -> LabelSet {
        s.parse().expect("valid label set")
    }

    fn sel(s: &str) -> LabelSelector {
        s.parse().expect("valid selector")
    }

    #[test]
    fn label_sets_stay_sorted_and_unique() {
        let mut labels = LabelSet::new();
        assert!(labels.insert("zz", "1"));
        assert!(labels.insert("aa", "2"));
        assert!(labels.insert("aa", "1"));
        assert!(!labels.insert("aa", "1"));
        assert_eq!(labels.to_string(), "aa=1,aa=2,zz=1");
        assert_eq!(labels.values("aa").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(labels.get("zz"), Some("1"));
        assert_eq!(labels.get("missing"), None);
        labels.set("aa", "3");
        assert_eq!(labels.to_string(), "aa=3,zz=1");
        assert!(labels.remove("aa"));
        assert!(!labels.remove("aa"));
        assert_eq!(labels.to_string(), "zz=1");
    }

    #[test]
    fn label_set_display_parses_back() {
        let labels = set("content-type=application/x-ndjson,app.gazette.dev/message-type=a.B,xx=");
        assert_eq!(
            labels.to_string().parse::<LabelSet>().expect("round trip"),
            labels
        );
    }

    #[test]
    fn invalid_labels_are_rejected() {
        for bad in [
            "a=b",
            "name#x=1",
            "ok=has space",
            "ok=a,b",
            "ok=(x)",
            "ok=!x",
        ] {
            assert!(bad.parse::<LabelSet>().is_err(), "{bad} should be rejected");
        }
        assert!(Label::new("x".repeat(65), "v").validate().is_err());
        assert!(Label::new("xx", "v".repeat(1025)).validate().is_err());
        assert!(Label::new("xx", "v".repeat(1024)).validate().is_ok());
        let mut mixed = LabelSet::new();
        mixed.insert("aa", "");
        mixed.insert("aa", "x");
        assert!(
            mixed.validate().is_err(),
            "empty and non-empty values of one name"
        );
    }

    #[test]
    fn union_prefers_the_left_values_and_subtract_needs_exact_values() {
        let registers = set("author=old,cookie=1");
        let updated = set("author=new").union(&registers);
        assert_eq!(updated.to_string(), "author=new,cookie=1");
        assert_eq!(
            registers.subtract(&set("author=old")).to_string(),
            "cookie=1"
        );
        assert_eq!(registers.subtract(&set("author=other")), registers);
        let multi = set("tag=a,tag=b");
        assert_eq!(
            multi.subtract(&set("tag=a")),
            multi,
            "values must match exactly"
        );
        assert!(multi.subtract(&set("tag=a,tag=b")).is_empty());
    }

    #[test]
    fn selectors_follow_gazettes_matching_rules() {
        let labels = set("env=prod,tier=web,zone=a,zone=b");
        assert!(sel("").matches(&labels));
        assert!(sel("env=prod").matches(&labels));
        assert!(!sel("env=qa").matches(&labels));
        assert!(
            sel("env").matches(&labels),
            "empty include value means any value"
        );
        assert!(!sel("region").matches(&labels));
        assert!(
            sel("env in (qa,prod)").matches(&labels),
            "values of one name are ORed"
        );
        assert!(!sel("env=prod,tier=db").matches(&labels), "names are ANDed");
        assert!(sel("zone=b").matches(&labels));
        assert!(!sel("!env").matches(&labels));
        assert!(sel("!region").matches(&labels));
        assert!(!sel("tier!=web").matches(&labels));
        assert!(sel("tier!=db").matches(&labels));
        assert!(!sel("zone notin (c,a)").matches(&labels));
        assert!(sel("zone not in (c,d)").matches(&labels));
    }

    #[test]
    fn the_documented_grammar_parses() {
        let parsed = sel("aa=b, cc in (x, y),dd ,!ee,ff!=g,hh==i,jj notin (k),kk not in (l,m)");
        assert_eq!(parsed.include.to_string(), "aa=b,cc=x,cc=y,dd=,hh=i");
        assert_eq!(parsed.exclude.to_string(), "ee=,ff=g,jj=k,kk=l,kk=m");
        assert_eq!(
            parsed.to_string(),
            "aa=b,cc in (x,y),dd,hh=i,!ee,ff!=g,jj!=k,kk notin (l,m)"
        );
        assert_eq!(
            sel("in").include.to_string(),
            "in=",
            "`in` alone is a label name"
        );
        assert_eq!(sel("prefix=a/b/").include.get("prefix"), Some("a/b/"));
    }

    #[test]
    fn malformed_selectors_are_errors() {
        for bad in [
            "aa=",
            "=bb",
            "aa=b,",
            ",aa=b",
            "aa in ()",
            "aa in (b",
            "aa in b",
            "aa b",
            "!",
            "aa=b c",
            "prefix=a/b",
            "aa#=b",
            "aa=b,aa",
            "x=y",
            "cc not",
            "cc not (x)",
        ] {
            assert!(
                bad.parse::<LabelSelector>().is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    fn name_strategy() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["aa", "bb", "cc", "dd"]).prop_map(String::from)
    }

    fn value_strategy() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["x", "y", "z"]).prop_map(String::from)
    }

    fn set_strategy() -> impl Strategy<Value = LabelSet> {
        prop::collection::vec((name_strategy(), value_strategy()), 0..6)
            .prop_map(|pairs| pairs.into_iter().collect())
    }

    /// A selector set: per name, either "any value" or a few values.
    fn selector_set_strategy() -> impl Strategy<Value = LabelSet> {
        prop::collection::btree_map(
            name_strategy(),
            prop::option::of(prop::collection::btree_set(value_strategy(), 1..3)),
            0..3,
        )
        .prop_map(|names| {
            let mut set = LabelSet::new();
            for (name, values) in names {
                match values {
                    None => {
                        set.insert(name, "");
                    }
                    Some(values) => {
                        for value in values {
                            set.insert(name.clone(), value);
                        }
                    }
                }
            }
            set
        })
    }

    /// The rules written out over plain collections, independently of the
    /// sorted-slice implementation.
    fn model_matches(selector: &LabelSelector, labels: &LabelSet) -> bool {
        use std::collections::{BTreeMap, BTreeSet};
        let group = |s: &LabelSet| {
            let mut map: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for l in s.iter() {
                map.entry(l.name.clone())
                    .or_default()
                    .insert(l.value.clone());
            }
            map
        };
        let have = group(labels);
        let hit = |name: &String, wanted: &BTreeSet<String>| match have.get(name) {
            None => false,
            Some(present) => wanted.contains("") || !present.is_disjoint(wanted),
        };
        group(&selector.include).iter().all(|(n, w)| hit(n, w))
            && !group(&selector.exclude).iter().any(|(n, w)| hit(n, w))
    }

    proptest! {
        #[test]
        fn matching_agrees_with_the_model(
            include in selector_set_strategy(),
            exclude in selector_set_strategy(),
            labels in set_strategy(),
        ) {
            let selector = LabelSelector { include, exclude };
            prop_assert_eq!(selector.matches(&labels), model_matches(&selector, &labels));
        }

        #[test]
        fn selectors_round_trip_through_their_string_form(
            include in selector_set_strategy(),
            exclude in selector_set_strategy(),
        ) {
            let selector = LabelSelector { include, exclude };
            let text = selector.to_string();
            let parsed = text
                .parse::<LabelSelector>()
                .map_err(|e: SpecError| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(parsed, selector);
        }

        #[test]
        fn adding_labels_never_unmatches_an_include_only_selector(
            include in selector_set_strategy(),
            labels in set_strategy(),
            extra in set_strategy(),
        ) {
            let selector = LabelSelector { include, exclude: LabelSet::new() };
            if selector.matches(&labels) {
                prop_assert!(selector.matches(&labels.union(&extra)));
                let mut grown = labels.clone();
                for l in extra.iter() {
                    grown.insert(l.name.clone(), l.value.clone());
                }
                prop_assert!(selector.matches(&grown));
            }
        }

        #[test]
        fn the_empty_selector_matches_everything(labels in set_strategy()) {
            prop_assert!(LabelSelector::all().matches(&labels));
        }
    }
}
