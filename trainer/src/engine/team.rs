//! A second thread for the fused CPU step: it runs one share of each phase while the caller
//! runs the other, and spins between phases.
//!
//! Why not rayon: a phase of a batch-256 step lasts microseconds, and rayon's idle workers
//! sleep on a futex between them. On the 2-core dev VM, splitting the step with
//! `rayon::join` measured 401k samples/s against 423k on one thread; a join round trip
//! through this spinning helper costs about 20 ns. The helper parks after [`SPIN`] idle
//! iterations (about 0.1 ms), so it burns no core between trainings.
//!
//! The one `unsafe` part hands a borrowed closure to the helper: [`Team::join`] does not
//! return until the helper has finished with it, so the borrow outlives every use.

use std::cell::UnsafeCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Idle spin iterations before the helper parks.
const SPIN: u32 = 1 << 12;

/// A job posted to the helper: a type-erased `FnMut`, valid until the helper reports done.
type Job = *mut (dyn FnMut() + Send);

struct Shared {
    /// Jobs posted so far; the helper runs job `posted` when it differs from the last it ran.
    posted: AtomicUsize,
    /// The number of the last job the helper finished.
    done: AtomicUsize,
    job: UnsafeCell<Option<Job>>,
    parked: AtomicBool,
    panicked: AtomicBool,
    stop: AtomicBool,
    /// A join is in flight: a second one (from another thread, from inside either half, or
    /// on the helper itself) runs both halves inline instead of racing for `job`.
    busy: AtomicBool,
}

// SAFETY: `job` is written by the caller only while the helper waits for `posted` to move,
// and read by the helper only after it has (Release/Acquire on `posted`); see `Team::join`.
unsafe impl Sync for Shared {}
// SAFETY: as above; the raw pointer is only dereferenced under that protocol.
unsafe impl Send for Shared {}

/// One thread (no helper) or two (the caller and a spinning helper).
pub struct Team {
    helper: Option<(Arc<Shared>, JoinHandle<()>)>,
}

impl Team {
    /// A team of `threads` (1 or 2; more are treated as 2). Falls back to one thread if the
    /// helper cannot be spawned.
    pub fn new(threads: usize) -> Self {
        if threads < 2 {
            return Self { helper: None };
        }
        let shared = Arc::new(Shared {
            posted: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            job: UnsafeCell::new(None),
            parked: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            busy: AtomicBool::new(false),
        });
        let s = shared.clone();
        let spawned = std::thread::Builder::new().name("fused-step".into()).spawn(move || helper(&s));
        Self { helper: spawned.ok().map(|h| (shared, h)) }
    }

    /// How many threads run the shares.
    pub fn threads(&self) -> usize {
        if self.helper.is_some() {
            2
        } else {
            1
        }
    }

    /// Run `a` here and `b` on the helper (or both here, in order, without one or while
    /// another join is in flight); returns when both are done. A panic in `b` is raised here.
    pub fn join(&self, a: impl FnOnce(), b: impl FnOnce() + Send) {
        let Some((shared, handle)) = self.helper.as_ref().filter(|(s, _)| !s.busy.swap(true, Ordering::Acquire)) else {
            a();
            b();
            return;
        };
        let mut b = Some(b);
        let mut call = move || {
            if let Some(b) = b.take() {
                b()
            }
        };
        let job: *mut (dyn FnMut() + Send + '_) = &mut call;
        // SAFETY: only the lifetime is erased. The helper calls the job once and reports
        // done; this function waits for that before `call` goes out of scope.
        let job: Job = unsafe { std::mem::transmute(job) };
        // SAFETY: the helper finished the previous job (we waited for it) and reads the cell
        // only after seeing `posted` move below.
        unsafe { *shared.job.get() = Some(job) };
        let seq = shared.posted.fetch_add(1, Ordering::SeqCst) + 1;
        if shared.parked.load(Ordering::SeqCst) {
            handle.thread().unpark();
        }
        // Waits for the helper even if `a` panics: `b` borrows from the caller's frames.
        let wait = WaitFor { shared, seq };
        a();
        drop(wait);
        if shared.panicked.swap(false, Ordering::AcqRel) {
            panic!("the fused step's helper thread panicked");
        }
    }
}

/// Spins until the helper has finished job `seq`, when dropped.
struct WaitFor<'a> {
    shared: &'a Shared,
    seq: usize,
}

impl Drop for WaitFor<'_> {
    fn drop(&mut self) {
        let mut spins = 0u32;
        while self.shared.done.load(Ordering::Acquire) != self.seq {
            spins += 1;
            // A preempted helper: give it the core rather than spin through a timeslice.
            if spins < SPIN {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        self.shared.busy.store(false, Ordering::Release);
    }
}

fn helper(s: &Shared) {
    let mut seen = 0;
    loop {
        let mut spins = 0u32;
        let seq = loop {
            let p = s.posted.load(Ordering::Acquire);
            if p != seen {
                break p;
            }
            if s.stop.load(Ordering::Acquire) {
                return;
            }
            spins += 1;
            if spins < SPIN {
                std::hint::spin_loop();
            } else {
                // Announce the park, then look once more: the poster checks `parked` after
                // moving `posted` (both SeqCst), so one of the two sees the other.
                s.parked.store(true, Ordering::SeqCst);
                if s.posted.load(Ordering::SeqCst) == seen && !s.stop.load(Ordering::SeqCst) {
                    std::thread::park_timeout(Duration::from_millis(50));
                }
                s.parked.store(false, Ordering::SeqCst);
                spins = 0;
            }
        };
        seen = seq;
        // SAFETY: the poster wrote the job before moving `posted` and keeps it alive until
        // `done` reaches `seq`.
        if let Some(job) = unsafe { *s.job.get() } {
            if catch_unwind(AssertUnwindSafe(|| unsafe { (*job)() })).is_err() {
                s.panicked.store(true, Ordering::Release);
            }
        }
        s.done.store(seq, Ordering::Release);
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        if let Some((shared, handle)) = self.helper.take() {
            shared.stop.store(true, Ordering::SeqCst);
            handle.thread().unpark();
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_halves_run_and_borrow_safely() {
        for threads in [1, 2] {
            let team = Team::new(threads);
            let (mut x, mut y) = (vec![0u64; 1000], vec![0u64; 1000]);
            for round in 0..200u64 {
                team.join(|| x.iter_mut().for_each(|v| *v += round), || y.iter_mut().for_each(|v| *v += 2 * round));
            }
            assert!(x.iter().all(|&v| v == 199 * 200 / 2), "threads {threads}");
            assert!(y.iter().all(|&v| v == 199 * 200), "threads {threads}");
        }
    }

    #[test]
    fn a_panic_on_either_side_waits_for_the_other_and_propagates() {
        let team = Team::new(2);
        let done = AtomicBool::new(false);
        let caller = catch_unwind(AssertUnwindSafe(|| {
            team.join(
                || panic!("caller"),
                || {
                    std::thread::sleep(Duration::from_millis(20));
                    done.store(true, Ordering::SeqCst);
                },
            )
        }));
        assert!(caller.is_err());
        assert!(done.load(Ordering::SeqCst), "the helper's half finished before the caller unwound");
        let helper = catch_unwind(AssertUnwindSafe(|| team.join(|| {}, || panic!("helper"))));
        assert!(helper.is_err());
    }

    #[test]
    fn nested_and_concurrent_joins_run_inline() {
        let team = Team::new(2);
        let hits = AtomicUsize::new(0);
        let bump = || {
            hits.fetch_add(1, Ordering::Relaxed);
        };
        // Inside either half, and from two threads at once: no race, no hang.
        team.join(|| team.join(bump, bump), || team.join(bump, bump));
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..100 {
                        team.join(bump, bump);
                    }
                });
            }
        });
        assert_eq!(hits.load(Ordering::Relaxed), 4 + 2 * 100 * 2);
    }

    #[test]
    fn the_helper_wakes_after_parking() {
        let team = Team::new(2);
        let hit = AtomicUsize::new(0);
        std::thread::sleep(Duration::from_millis(30)); // long enough to park
        team.join(
            || {},
            || {
                hit.fetch_add(1, Ordering::Relaxed);
            },
        );
        assert_eq!(hit.load(Ordering::Relaxed), 1);
    }
}
