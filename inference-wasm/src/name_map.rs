//! A small map from names to values, kept sorted by name: a bundle's tensors (at most
//! `weights::MAX_TENSORS`, so inserting in place stays cheap).
//!
//! Why not a `BTreeMap`: a bundle holds a few dozen tensors, found by binary search just as
//! well, and the B-tree's node code was 100 of the 445 wasm functions V8 compiled lazily to
//! load a bundle (`node --trace-wasm-compilation-times`; bench/wasm cold start).

use std::ops::Index;

/// Values by name, in name order; each name once.
#[derive(Debug, Clone, PartialEq)]
pub struct NameMap<T> {
    items: Vec<(String, T)>,
}

impl<T> Default for NameMap<T> {
    fn default() -> Self {
        Self { items: Vec::new() }
    }
}

impl<T> NameMap<T> {
    fn position(&self, name: &str) -> Result<usize, usize> {
        self.items.binary_search_by(|(n, _)| n.as_str().cmp(name))
    }

    /// Add `value` under `name`; a name already present is refused, and both handed back.
    pub fn insert(&mut self, name: String, value: T) -> Result<(), (String, T)> {
        match self.position(&name) {
            Ok(_) => Err((name, value)),
            Err(at) => {
                self.items.insert(at, (name, value));
                Ok(())
            }
        }
    }

    /// The value under `name`.
    pub fn get(&self, name: &str) -> Option<&T> {
        self.position(name).ok().map(|i| &self.items[i].1)
    }

    /// Take the value under `name` out.
    pub fn remove(&mut self, name: &str) -> Option<T> {
        self.position(name).ok().map(|i| self.items.remove(i).1)
    }

    /// How many names.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Names and values, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &T)> {
        self.items.iter().map(|(n, v)| (n.as_str(), v))
    }
}

impl<T> IntoIterator for NameMap<T> {
    type Item = (String, T);
    type IntoIter = std::vec::IntoIter<(String, T)>;
    /// Names and values, in name order.
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

/// `map[name]`: for names a check already proved present.
impl<T> Index<&str> for NameMap<T> {
    type Output = T;
    fn index(&self, name: &str) -> &T {
        match self.get(name) {
            Some(v) => v,
            None => panic!("no entry named `{name}`"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_names_sorted_and_unique() {
        let mut m = NameMap::default();
        for (i, name) in ["b", "a", "c", "hidden.10", "hidden.2"].into_iter().enumerate() {
            assert_eq!(m.insert(name.to_owned(), i), Ok(()));
        }
        assert_eq!(m.insert("a".to_owned(), 9), Err(("a".to_owned(), 9)));
        let names: Vec<&str> = m.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["a", "b", "c", "hidden.10", "hidden.2"]);
        assert_eq!((m.get("c"), m["hidden.2"], m.get("d")), (Some(&2), 4, None));
        assert_eq!((m.remove("b"), m.remove("b"), m.len()), (Some(0), None, 4));
        assert_eq!(NameMap::<u8>::default().len(), 0);
    }
}
