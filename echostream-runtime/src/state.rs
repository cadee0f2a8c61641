//! [`State`]: a typed key-value store shared by handlers, used for a [`Context`](crate::Context)'s
//! global state and for each [`Session`](crate::Session)'s own state.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

/// The values of one type, by name.
type Named = HashMap<Box<str>, Arc<dyn Any + Send + Sync>>;

/// A map from (type, name) to a shared value.
///
/// Values are stored as `Arc<T>` and handed out as clones of it, so no lock is held while a value
/// is used. The type is part of the key: `get::<u32>("n")` never sees a `String` stored as `"n"`.
/// The unnamed methods ([`State::insert`], [`State::get`]) key by type alone, for the common case
/// of one value per type (an authenticated user, a database pool). Lookups allocate nothing.
#[derive(Default)]
pub struct State {
    values: RwLock<HashMap<TypeId, Named>>,
}

impl State {
    /// An empty store.
    pub fn new() -> State {
        State::default()
    }

    /// Stores `value` as the one value of type `T`, returning the value it replaces.
    pub fn insert<T: Send + Sync + 'static>(&self, value: T) -> Option<Arc<T>> {
        self.set("", value)
    }

    /// The value of type `T` stored with [`State::insert`].
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.get_named("")
    }

    /// Removes the value of type `T` stored with [`State::insert`].
    pub fn remove<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.remove_named("")
    }

    /// Stores `value` under `key`, returning the value of the same type it replaces.
    pub fn set<T: Send + Sync + 'static>(&self, key: &str, value: T) -> Option<Arc<T>> {
        let old = self
            .write()
            .entry(TypeId::of::<T>())
            .or_default()
            .insert(key.into(), Arc::new(value));
        old.and_then(|v| v.downcast().ok())
    }

    /// The value of type `T` stored under `key`.
    pub fn get_named<T: Send + Sync + 'static>(&self, key: &str) -> Option<Arc<T>> {
        let map = self.values.read().unwrap_or_else(|e| e.into_inner());
        let value = map.get(&TypeId::of::<T>())?.get(key)?.clone();
        drop(map);
        value.downcast().ok()
    }

    /// Removes the value of type `T` stored under `key`.
    pub fn remove_named<T: Send + Sync + 'static>(&self, key: &str) -> Option<Arc<T>> {
        let mut map = self.write();
        let named = map.get_mut(&TypeId::of::<T>())?;
        let old = named.remove(key);
        if named.is_empty() {
            map.remove(&TypeId::of::<T>());
        }
        drop(map);
        old.and_then(|v| v.downcast().ok())
    }

    /// How many values are stored.
    pub fn len(&self) -> usize {
        let map = self.values.read().unwrap_or_else(|e| e.into_inner());
        map.values().map(HashMap::len).sum()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<TypeId, Named>> {
        self.values.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State").field("len", &self.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct User(String);

    #[test]
    fn typed_values_round_trip() {
        let state = State::new();
        assert!(state.get::<User>().is_none());
        assert!(state.insert(User("ann".into())).is_none());
        assert_eq!(*state.get::<User>().unwrap(), User("ann".into()));
        let old = state.insert(User("bob".into())).unwrap();
        assert_eq!(*old, User("ann".into()));
        assert_eq!(*state.remove::<User>().unwrap(), User("bob".into()));
        assert!(state.is_empty());
    }

    #[test]
    fn names_and_types_both_key() {
        let state = State::new();
        state.set("n", 1u32);
        state.set("n", "one".to_string());
        state.set("m", 2u32);
        assert_eq!(*state.get_named::<u32>("n").unwrap(), 1);
        assert_eq!(*state.get_named::<String>("n").unwrap(), "one");
        assert_eq!(*state.get_named::<u32>("m").unwrap(), 2);
        assert!(state.get_named::<u64>("n").is_none());
        assert_eq!(state.len(), 3);
        assert_eq!(*state.remove_named::<u32>("n").unwrap(), 1);
        assert!(state.get_named::<u32>("n").is_none());
        assert_eq!(
            *state.get_named::<u32>("m").unwrap(),
            2,
            "other names of the type stay"
        );
        assert_eq!(state.len(), 2);
        assert!(state.remove_named::<u32>("n").is_none());
        state.remove_named::<u32>("m");
        state.remove_named::<String>("n");
        assert!(state.is_empty());
    }
}
