//! One async lock per object, so operations on the same object run one at a time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

/// The per-object locks.
#[derive(Debug, Default)]
pub struct ObjectLocks {
    map: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl ObjectLocks {
    /// Wait for, then hold, the lock of object `key`.
    pub async fn lock(&self, key: &str) -> OwnedMutexGuard<()> {
        let m = {
            let mut map = self.map.lock().expect("lock map poisoned");
            map.entry(key.to_string()).or_default().clone()
        };
        m.lock_owned().await
    }

    /// Forget the lock of a removed object.
    pub fn forget(&self, key: &str) {
        self.map.lock().expect("lock map poisoned").remove(key);
    }
}
