//! Connection slots: `--max-clients` counted in one place, even across
//! prefork children (then the counter lives in a shared anonymous mapping),
//! and, for a worker whose connections are placed on it, its own open
//! count released with them.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use nix::sys::mman::{mmap_anonymous, MapFlags, ProtFlags};

use crate::model::ServeError;
use crate::placement::{Inbox, Loads};

#[derive(Clone)]
enum Counter {
    Local(Arc<AtomicUsize>),
    Shared(&'static AtomicUsize),
}

/// A bounded count of open connections.
#[derive(Clone)]
pub struct Slots {
    used: Counter,
    max: usize,
    /// The worker's open count in placement's loads, if placed.
    placed: Option<(Loads, usize)>,
}

impl Slots {
    /// Slots counted within this process.
    pub fn local(max: usize) -> Self {
        Slots {
            used: Counter::Local(Arc::new(AtomicUsize::new(0))),
            max,
            placed: None,
        }
    }

    /// Slots counted in memory shared with children forked later.
    pub fn shared(max: usize) -> Result<Self, ServeError> {
        let len = NonZeroUsize::new(std::mem::size_of::<AtomicUsize>()).expect("non-zero size");
        // SAFETY: a fresh anonymous mapping, page-aligned and zero-filled, is a
        // valid AtomicUsize (zero is a valid value); it is never unmapped, so
        // the 'static reference stays valid in this process and its children.
        let counter = unsafe {
            let ptr = mmap_anonymous(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
            .map_err(|e| ServeError::Io {
                what: "map shared memory for connection slots",
                source: e.into(),
            })?;
            &*ptr.as_ptr().cast::<AtomicUsize>()
        };
        Ok(Slots {
            used: Counter::Shared(counter),
            max,
            placed: None,
        })
    }

    /// The same slots for the worker of `inbox`: a connection it refuses
    /// or closes also leaves its open count in the placement's loads.
    pub fn for_inbox(&self, inbox: &Inbox) -> Self {
        Slots {
            used: self.used.clone(),
            max: self.max,
            placed: Some((inbox.loads(), inbox.index())),
        }
    }

    fn counter(&self) -> &AtomicUsize {
        match &self.used {
            Counter::Local(a) => a,
            Counter::Shared(s) => s,
        }
    }

    /// Takes a slot; false when all are in use (the connection is then
    /// refused, and no longer counts as placed).
    pub fn try_acquire(&self) -> bool {
        let taken = self
            .counter()
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok();
        if !taken {
            self.unplace();
        }
        taken
    }

    /// Returns a slot.
    pub fn release(&self) {
        self.counter().fetch_sub(1, Ordering::SeqCst);
        self.unplace();
    }

    fn unplace(&self) {
        if let Some((loads, i)) = self.placed {
            loads.release(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded() {
        for slots in [Slots::local(2), Slots::shared(2).unwrap()] {
            assert!(slots.try_acquire());
            assert!(slots.try_acquire());
            assert!(!slots.try_acquire());
            slots.release();
            assert!(slots.try_acquire());
        }
    }
}
