//! Runs inferences on worker threads, off the async reactor, with a bounded queue and
//! optional adaptive batching.
//!
//! # Guarantees
//! - A full queue is refused at once ([`ExecError::Overloaded`]), never waited on: the
//!   caller answers 503 with `Retry-After`.
//! - With batching on, a worker takes whatever requests are already queued (up to
//!   `max_batch_size` rows) and, if `max_batch_delay` is non-zero, waits at most that
//!   long for more. With the delay at zero a lone request never waits.
//! - Only requests whose inputs agree in every dimension but the first are batched
//!   together, and only for models whose inputs and outputs all have a variable first
//!   dimension. Each caller gets exactly its own rows back.
//! - Dropping the [`Executor`] lets queued work finish; then the workers exit.
//! - A fast model runs inline: once a model has been seen to answer small calls (up to
//!   [`INLINE_ROWS`] rows) in under `inline_max` on average, a small request runs on
//!   the I/O thread that parsed it instead of crossing to a worker and back (that
//!   crossing, two thread wake-ups, costs more than a 5 µs model). The estimate keeps
//!   being updated by every small call, inline or not, so a model that turns slow goes
//!   back to the workers; large requests always go to the workers; `inline_max` zero
//!   turns this off. A model that batches and takes under [`FOLD_GAIN_MIN`] runs
//!   inline too, unless a batch delay was set: folding its calls cannot save what the
//!   crossing costs. A slower one (or one with a batch delay)
//!   runs inline only when no other request is in the executor and few connections
//!   are open (the I/O thread's live tasks): under concurrent load, folding requests
//!   into one model call on a worker does more per request than skipping the crossing.
//! - Under load (many connections on the I/O thread), a batching model under
//!   [`FOLD_GAIN_MIN`] folds on the I/O thread itself: the first request opens a
//!   fold and yields once, the requests the thread reads meanwhile join it, and the
//!   first then runs them as calls of at most `max_batch_size` compatible rows. No
//!   timer: a fold holds what one turn of the thread read. A fold whose first
//!   request is dropped runs when it is dropped, so the others are still answered.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use tokio::sync::oneshot;

use crate::metrics::ModelMetrics;
use crate::runtime::{Runtime, RuntimeError};
use crate::tensor::{Tensor, TensorData};

/// How requests are run: batching (`max_batch_size <= 1` turns it off) and the
/// inline fast path (`inline_max` zero turns it off).
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    pub max_batch_size: usize,
    pub max_batch_delay: Duration,
    /// Small requests of a model whose small calls average under this run on the
    /// I/O thread.
    pub inline_max: Duration,
}

/// Requests of at most this many rows may run inline, and only calls this small
/// feed the estimate.
pub const INLINE_ROWS: usize = 16;

/// Small calls seen before the estimate is trusted (the first, often slowed by
/// lazy initialisation, is not counted).
const WARM_UP_CALLS: u64 = 8;

/// The running estimate of how long a small call takes: an exponentially weighted
/// mean (weight 1/8 for the newest) in nanoseconds, and how many calls fed it.
#[derive(Default)]
struct Estimate {
    mean_ns: AtomicU64,
    calls: AtomicU64,
}

impl Estimate {
    fn observe(&self, rows: usize, took: Duration) {
        if rows > INLINE_ROWS {
            return;
        }
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        match n {
            0 => {} // the first call pays for lazy initialisation
            1 => self.mean_ns.store(ns, Ordering::Relaxed),
            _ => {
                // Racy read-modify-write: a lost update among concurrent calls only
                // drops one sample from the mean.
                let old = self.mean_ns.load(Ordering::Relaxed);
                // One call counts for at most 4× the mean: a thread preempted once
                // mid-call must not send a fast model to the workers (where batched
                // calls then kept the mean up). A model that really slows down still
                // moves the mean up by over a third per call.
                let ns = ns.min(old.saturating_mul(4).max(1_000));
                let new = old - old / 8 + ns / 8;
                self.mean_ns.store(new, Ordering::Relaxed);
            }
        }
    }

    fn warm(&self) -> bool {
        self.calls.load(Ordering::Relaxed) > WARM_UP_CALLS
    }

    /// Whether a call of `rows` rows should run inline under `max`.
    fn inline(&self, rows: usize, max: Duration) -> bool {
        !max.is_zero()
            && rows <= INLINE_ROWS
            && self.warm()
            && u128::from(self.mean_ns.load(Ordering::Relaxed)) < max.as_nanos()
    }
}

/// Why a job did not produce outputs.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("server overloaded: the inference queue is full")]
    Overloaded,
    #[error("the model was unloaded before the request ran")]
    Stopped,
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

struct Job {
    inputs: Vec<Tensor>,
    reply: oneshot::Sender<Result<Vec<Tensor>, RuntimeError>>,
}

impl Job {
    fn rows(&self) -> usize {
        self.inputs.first().map(Tensor::rows).unwrap_or(1)
    }

    /// Whether `other` can share a batch with `self`: same inputs, same trailing dims.
    fn compatible(&self, other: &Job) -> bool {
        self.inputs.len() == other.inputs.len()
            && self.inputs.iter().zip(&other.inputs).all(|(a, b)| {
                a.name == b.name
                    && a.data.datatype() == b.data.datatype()
                    && a.shape.len() == b.shape.len()
                    && a.shape.get(1..) == b.shape.get(1..)
            })
    }
}

/// A pool of worker threads in front of one loaded model.
pub struct Executor {
    tx: Sender<Job>,
    runner: Arc<Runner>,
    inline_max: Duration,
    /// Most rows one call may fold.
    max_batch_size: usize,
    /// This executor's key among an I/O thread's open folds ([`FOLDS`]).
    id: u64,
    /// Whether the workers fold queued requests into one call.
    batchable: bool,
    /// Whether a batching model under [`FOLD_GAIN_MIN`] runs inline even under load
    /// (no batch delay was asked for).
    eager_inline: bool,
    /// Requests inside [`Executor::submit`] now.
    in_flight: AtomicUsize,
}

/// Counts a request in [`Executor::in_flight`] while it lives.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    /// Enters; returns the guard and how many requests were already in.
    fn enter(n: &'a AtomicUsize) -> (Self, usize) {
        let before = n.fetch_add(1, Ordering::AcqRel);
        (InFlight(n), before)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A batching model whose small calls take less than this runs inline even under
/// load: the crossing to a worker and back (two thread wake-ups) costs more than
/// folding such calls can save. In development runs on a 2-core machine (64
/// connections, ONNX Runtime, a 5 µs model) a request cost about twice the CPU
/// through the workers, batching included, as inline.
pub const FOLD_GAIN_MIN: Duration = Duration::from_micros(25);

/// At most this many live tasks on the I/O runtime (one per open connection, plus a
/// few of the server's own) count as quiet traffic.
const QUIET_TASKS: usize = 16;

/// Whether the server's traffic is quiet: few open connections. Many connections
/// mean requests that can be folded into one model call on a worker.
fn quiet() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.metrics().num_alive_tasks() <= QUIET_TASKS)
}

/// Requests for one model gathered on one I/O thread, to run as one call.
struct Fold {
    jobs: Vec<Job>,
    /// Taken to run: a request arriving now starts the next fold.
    closed: bool,
}

thread_local! {
    /// The folds open on this thread, by executor ([`Executor::id`]). A fold is
    /// shared with its leader, which may resume on another thread of a
    /// multi-threaded runtime: it then runs the fold it holds all the same.
    static FOLDS: RefCell<HashMap<u64, Arc<Mutex<Fold>>>> = RefCell::default();
}

/// The request that opened a fold; runs the fold when dropped.
struct Lead<'a> {
    exec: &'a Executor,
    fold: Arc<Mutex<Fold>>,
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        self.exec.run_fold(&self.fold);
    }
}

impl Executor {
    pub fn new(
        runtime: Arc<dyn Runtime>,
        workers: usize,
        queue: usize,
        batch: BatchConfig,
        metrics: Arc<ModelMetrics>,
    ) -> Executor {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(queue.max(1));
        let batchable = batch.max_batch_size > 1
            && runtime
                .inputs()
                .iter()
                .chain(runtime.outputs())
                .all(|s| s.shape.first().is_some_and(|&d| d < 0));
        let runner = Arc::new(Runner {
            runtime,
            metrics,
            estimate: Estimate::default(),
        });
        for i in 0..workers.max(1) {
            let worker = Worker {
                rx: rx.clone(),
                batch,
                batchable,
                runner: runner.clone(),
            };
            std::thread::Builder::new()
                .name(format!("hoist-infer-{i}"))
                .spawn(move || worker.run())
                .expect("spawn inference worker");
        }
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Executor {
            tx,
            runner,
            inline_max: batch.inline_max,
            max_batch_size: batch.max_batch_size,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            batchable,
            eager_inline: batch.max_batch_delay.is_zero(),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Runs `inputs`: inline when the model is fast and the request small, else
    /// queued for a worker, waiting for the outputs.
    pub async fn submit(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, ExecError> {
        let rows = inputs.first().map(Tensor::rows).unwrap_or(1);
        let (_in_flight, others) = InFlight::enter(&self.in_flight);
        let estimate = &self.runner.estimate;
        // Folding requests into one call saves at most a call's fixed cost; below
        // FOLD_GAIN_MIN that is less than the crossing to a worker and back. Not when
        // the operator set a batch delay: they asked for batches.
        let eager = self.batchable
            && self.eager_inline
            && estimate.inline(rows, FOLD_GAIN_MIN.min(self.inline_max));
        if eager && !quiet() {
            return self.fold(inputs).await;
        }
        let inline = if self.batchable {
            eager || (others == 0 && quiet() && estimate.inline(rows, self.inline_max))
        } else {
            estimate.inline(rows, self.inline_max)
        };
        if inline {
            return Ok(self.runner.run(&inputs, rows)?);
        }
        let (reply, rx) = oneshot::channel();
        match self.tx.try_send(Job { inputs, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(ExecError::Overloaded),
            Err(TrySendError::Disconnected(_)) => return Err(ExecError::Stopped),
        }
        match rx.await {
            Ok(r) => Ok(r?),
            Err(_) => Err(ExecError::Stopped),
        }
    }

    /// Runs `inputs` on this I/O thread, folded into one call with the requests for
    /// this model that the thread reads before its next turn: the first to arrive
    /// leads, lets the thread's other ready connections (and those the reactor finds
    /// ready meanwhile) run up to their own call, then runs them all.
    async fn fold(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, ExecError> {
        let (reply, rx) = oneshot::channel();
        let mut job = Some(Job { inputs, reply });
        let lead = FOLDS.with(|folds| {
            let mut folds = folds.borrow_mut();
            if let Some(open) = folds.get(&self.id) {
                let mut open = open.lock().unwrap_or_else(PoisonError::into_inner);
                if !open.closed {
                    open.jobs.extend(job.take());
                    return None;
                }
            }
            let fold = Arc::new(Mutex::new(Fold {
                jobs: job.take().into_iter().collect(),
                closed: false,
            }));
            folds.insert(self.id, fold.clone());
            Some(fold)
        });
        if let Some(fold) = lead {
            // Dropped (the fold run) after the yield, or where the request is dropped.
            let _lead = Lead { exec: self, fold };
            tokio::task::yield_now().await;
        }
        match rx.await {
            Ok(r) => Ok(r?),
            Err(_) => Err(ExecError::Stopped),
        }
    }

    /// Closes `fold` and runs its requests: consecutive compatible ones as one call
    /// of at most `max_batch_size` rows.
    fn run_fold(&self, fold: &Arc<Mutex<Fold>>) {
        let jobs = {
            let mut f = fold.lock().unwrap_or_else(PoisonError::into_inner);
            f.closed = true;
            std::mem::take(&mut f.jobs)
        };
        let _ = FOLDS.try_with(|folds| {
            let mut folds = folds.borrow_mut();
            if folds.get(&self.id).is_some_and(|f| Arc::ptr_eq(f, fold)) {
                folds.remove(&self.id);
            }
        });
        let (mut group, mut rows) = (Vec::<Job>::new(), 0);
        for job in jobs {
            let n = job.rows();
            if group
                .first()
                .is_some_and(|head| !head.compatible(&job) || rows + n > self.max_batch_size)
            {
                self.runner.run_jobs(std::mem::take(&mut group), rows);
                rows = 0;
            }
            rows += n;
            group.push(job);
        }
        if !group.is_empty() {
            self.runner.run_jobs(group, rows);
        }
    }

    /// Runs `inputs` on the calling thread's turn in the queue, blocking (load checks).
    pub fn submit_blocking(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, ExecError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { inputs, reply })
            .map_err(|_| ExecError::Stopped)?;
        Ok(rx.blocking_recv().map_err(|_| ExecError::Stopped)??)
    }
}

struct Worker {
    rx: Receiver<Job>,
    batch: BatchConfig,
    batchable: bool,
    runner: Arc<Runner>,
}

/// What runs jobs, alone or folded into one call: the model, its metrics, its estimate.
struct Runner {
    runtime: Arc<dyn Runtime>,
    metrics: Arc<ModelMetrics>,
    estimate: Estimate,
}

/// Runs the model, turning a panic inside the runtime into an error for this call
/// alone: the thread lives on.
fn guarded_run(runtime: &dyn Runtime, inputs: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.run(inputs)))
        .unwrap_or_else(|_| Err(RuntimeError::Run("the runtime panicked".into())))
}

impl Worker {
    fn run(self) {
        // A job that could not join the previous batch starts the next one.
        let mut carry: Option<Job> = None;
        loop {
            let first = match carry.take() {
                Some(j) => j,
                None => match self.rx.recv() {
                    Ok(j) => j,
                    Err(_) => return,
                },
            };
            // Until the estimate is warm, calls run alone so that it gets its samples.
            if !self.batchable || !self.runner.estimate.warm() {
                self.runner.run_one(first);
                continue;
            }
            let mut rows = first.rows();
            let mut jobs = vec![first];
            let deadline = Instant::now() + self.batch.max_batch_delay;
            while rows < self.batch.max_batch_size {
                let next = match self.rx.try_recv() {
                    Ok(j) => j,
                    Err(_) if self.batch.max_batch_delay.is_zero() => break,
                    Err(_) => {
                        let now = Instant::now();
                        if now >= deadline {
                            break;
                        }
                        match self.rx.recv_timeout(deadline - now) {
                            Ok(j) => j,
                            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                                break;
                            }
                        }
                    }
                };
                if jobs[0].compatible(&next)
                    && rows.saturating_add(next.rows()) <= self.batch.max_batch_size
                {
                    rows += next.rows();
                    jobs.push(next);
                } else {
                    carry = Some(next);
                    break;
                }
            }
            self.runner.run_jobs(jobs, rows);
        }
    }
}

impl Runner {
    /// Runs `jobs` (compatible, `rows` rows in all): one alone, several as one call.
    fn run_jobs(&self, mut jobs: Vec<Job>, rows: usize) {
        if jobs.len() == 1 {
            self.run_one(jobs.pop().expect("one job"));
        } else {
            self.run_batch(jobs, rows);
        }
    }

    /// Runs the model once on `inputs` (`rows` rows in all), timing the call for the
    /// metrics and the estimate.
    fn run(&self, inputs: &[Tensor], rows: usize) -> Result<Vec<Tensor>, RuntimeError> {
        let start = Instant::now();
        let result = guarded_run(&*self.runtime, inputs);
        let took = start.elapsed();
        self.metrics.observe_inference(took, rows);
        self.estimate.observe(rows, took);
        result
    }

    fn run_one(&self, job: Job) {
        let result = self.run(&job.inputs, job.rows());
        let _ = job.reply.send(result);
    }

    fn run_batch(&self, jobs: Vec<Job>, rows: usize) {
        let inputs: Result<Vec<Tensor>, RuntimeError> = (0..jobs[0].inputs.len())
            .map(|i| {
                let head = &jobs[0].inputs[i];
                let mut data = TensorData::with_capacity(head.data.datatype(), 0);
                for j in &jobs {
                    data.extend_from(&j.inputs[i].data)
                        .map_err(|e| RuntimeError::Run(e.to_string()))?;
                }
                let mut shape = head.shape.clone();
                shape[0] = rows;
                Tensor::new(head.name.clone(), shape, data)
                    .map_err(|e| RuntimeError::Run(e.to_string()))
            })
            .collect();
        let outputs = inputs.and_then(|inputs| self.run(&inputs, rows));
        match outputs {
            Ok(outputs) if outputs.iter().all(|o| o.shape.first() == Some(&rows)) => {
                let mut offset = 0;
                for job in jobs {
                    let n = job.rows();
                    let mine = outputs
                        .iter()
                        .map(|o| {
                            let per_row = crate::tensor::saturating_count(&o.shape[1..]);
                            let mut shape = o.shape.clone();
                            shape[0] = n;
                            Tensor {
                                name: o.name.clone(),
                                shape,
                                data: o.data.slice(offset * per_row, (offset + n) * per_row),
                            }
                        })
                        .collect();
                    offset += n;
                    let _ = job.reply.send(Ok(mine));
                }
            }
            // A model whose outputs don't follow the batch, or a batch that failed
            // (one bad request must not fail its neighbours): run each on its own.
            _ => jobs.into_iter().for_each(|j| self.run_one(j)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_micros(50);

    fn fed(calls: usize, each: Duration) -> Estimate {
        let e = Estimate::default();
        for _ in 0..calls {
            e.observe(1, each);
        }
        e
    }

    #[test]
    fn a_fast_model_runs_inline_only_once_warm() {
        let cold = fed(WARM_UP_CALLS as usize, Duration::from_micros(5));
        assert!(!cold.inline(1, MAX), "not before the warm-up calls are in");
        let warm = fed(WARM_UP_CALLS as usize + 1, Duration::from_micros(5));
        assert!(warm.inline(1, MAX));
        assert!(warm.inline(INLINE_ROWS, MAX));
        assert!(
            !warm.inline(INLINE_ROWS + 1, MAX),
            "large requests go to the workers"
        );
        assert!(!warm.inline(1, Duration::ZERO), "0 turns it off");
    }

    #[test]
    fn a_slow_first_call_does_not_count_and_a_slow_model_never_runs_inline() {
        let e = Estimate::default();
        e.observe(1, Duration::from_secs(2)); // lazy initialisation
        for _ in 0..WARM_UP_CALLS {
            e.observe(1, Duration::from_micros(4));
        }
        assert!(e.inline(1, MAX));
        assert!(!fed(20, Duration::from_micros(400)).inline(1, MAX));
    }

    #[test]
    fn a_model_that_turns_slow_goes_back_to_the_workers_and_large_calls_are_not_counted() {
        let e = fed(20, Duration::from_micros(5));
        for _ in 0..100 {
            e.observe(INLINE_ROWS + 1, Duration::from_secs(1));
        }
        assert!(
            e.inline(1, MAX),
            "batches of many rows do not move the estimate"
        );
        for _ in 0..40 {
            e.observe(1, Duration::from_micros(500));
        }
        assert!(!e.inline(1, MAX));
    }

    #[test]
    fn one_preempted_call_does_not_send_a_fast_model_to_the_workers() {
        let e = fed(40, Duration::from_micros(3));
        e.observe(1, Duration::from_millis(5));
        assert!(e.inline(1, FOLD_GAIN_MIN), "one outlier");
        // A model that really turns slow leaves the inline path within a few calls.
        for _ in 0..12 {
            e.observe(1, Duration::from_micros(400));
        }
        assert!(!e.inline(1, MAX));
    }

    /// Answers its input back after `takes` at least, and says on which thread it ran.
    struct Echo {
        io: Vec<crate::runtime::IoSpec>,
        threads: std::sync::Mutex<Vec<String>>,
        takes: Duration,
    }

    impl Runtime for Echo {
        fn kind(&self) -> crate::runtime::RuntimeKind {
            crate::runtime::RuntimeKind::Tract
        }
        fn inputs(&self) -> &[crate::runtime::IoSpec] {
            &self.io
        }
        fn outputs(&self) -> &[crate::runtime::IoSpec] {
            &self.io
        }
        fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
            let name = std::thread::current().name().unwrap_or("").to_string();
            self.threads.lock().unwrap().push(name);
            if !self.takes.is_zero() {
                std::thread::sleep(self.takes);
            }
            Ok(inputs.to_vec())
        }
    }

    /// An [`Echo`] model taking `takes` a call behind an executor of one worker that
    /// batches up to `max` rows with a batch delay of `delay`.
    fn echo_executor(takes: Duration, max: usize, delay: Duration) -> (Arc<Echo>, Executor) {
        let echo = Arc::new(Echo {
            io: vec![crate::runtime::IoSpec {
                name: "x".into(),
                datatype: crate::tensor::DataType::F32,
                shape: vec![-1, 1],
            }],
            threads: Default::default(),
            takes,
        });
        let batch = BatchConfig {
            max_batch_size: max,
            max_batch_delay: delay,
            inline_max: Duration::from_secs(1),
        };
        let exec = Executor::new(echo.clone(), 1, 8, batch, ModelMetrics::detached("echo"));
        (echo, exec)
    }

    /// Where a warm batching model (max 32 rows, batch delay `delay`) taking `takes`
    /// per call runs a one-row request: alone, then with another request in the
    /// executor.
    fn batching_model_runs_on(takes: Duration, delay: Duration) -> (String, String) {
        let (echo, exec) = echo_executor(takes, 32, delay);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let one = || vec![Tensor::new("x", vec![1, 1], TensorData::F32(vec![1.0])).unwrap()];
        let last_thread = || echo.threads.lock().unwrap().last().cloned().unwrap();
        for _ in 0..=WARM_UP_CALLS {
            rt.block_on(exec.submit(one())).unwrap();
        }
        rt.block_on(exec.submit(one())).unwrap();
        let alone = last_thread();
        let (_other, _) = InFlight::enter(&exec.in_flight);
        let out = rt.block_on(exec.submit(one())).unwrap();
        assert_eq!(out[0].data, TensorData::F32(vec![1.0]));
        (alone, last_thread())
    }

    #[test]
    fn a_slower_batching_model_runs_inline_only_when_no_other_request_is_in() {
        let (alone, busy) = batching_model_runs_on(FOLD_GAIN_MIN * 3, Duration::ZERO);
        assert!(!alone.starts_with("hoist-infer"), "alone and warm: inline");
        // Another request in the executor: this one goes to a worker, to be batched.
        assert!(busy.starts_with("hoist-infer"), "{busy}");
    }

    #[test]
    fn a_batching_model_faster_than_a_crossing_always_runs_inline() {
        let (alone, busy) = batching_model_runs_on(Duration::ZERO, Duration::ZERO);
        assert!(!alone.starts_with("hoist-infer"), "{alone}");
        assert!(!busy.starts_with("hoist-infer"), "{busy}");
        // With a batch delay the operator asked for batches: to the workers when busy.
        let (alone, busy) = batching_model_runs_on(Duration::ZERO, Duration::from_micros(200));
        assert!(!alone.starts_with("hoist-infer"), "{alone}");
        assert!(busy.starts_with("hoist-infer"), "{busy}");
    }

    /// A warm, fast batching model behind an executor of at most `max` rows a call.
    fn folding_executor(max: usize) -> (Arc<Echo>, Arc<Executor>) {
        let (echo, exec) = echo_executor(Duration::ZERO, max, Duration::ZERO);
        for _ in 0..=WARM_UP_CALLS {
            exec.submit_blocking(row(0.0)).unwrap();
        }
        (echo, Arc::new(exec))
    }

    fn row(x: f32) -> Vec<Tensor> {
        vec![Tensor::new("x", vec![1, 1], TensorData::F32(vec![x])).unwrap()]
    }

    #[test]
    fn many_connections_on_one_io_thread_fold_into_few_calls_each_getting_its_own_row() {
        let (echo, exec) = folding_executor(8);
        let before = echo.threads.lock().unwrap().len();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        // 40 requests at once on one I/O thread: more live tasks than quiet traffic.
        let answers = rt.block_on(async {
            let tasks: Vec<_> = (0..40)
                .map(|i| {
                    let exec = exec.clone();
                    tokio::spawn(async move { (i, exec.submit(row(i as f32)).await) })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        });
        for (i, answer) in answers {
            let answer = answer.unwrap();
            assert_eq!(answer[0].shape, vec![1, 1]);
            assert_eq!(
                answer[0].data,
                TensorData::F32(vec![i as f32]),
                "request {i}"
            );
        }
        let threads = echo.threads.lock().unwrap()[before..].to_vec();
        assert!(
            threads.iter().all(|t| !t.starts_with("hoist-infer")),
            "on the I/O thread: {threads:?}"
        );
        // At most 8 rows a call: at least 5 calls, and far fewer than 40.
        assert!(
            (5..=10).contains(&threads.len()),
            "{} calls for 40 requests",
            threads.len()
        );
    }

    #[test]
    fn a_fold_whose_leading_request_is_dropped_still_answers_the_others() {
        use std::future::Future;
        use std::task::{Context, Poll, Waker};
        let (echo, exec) = folding_executor(32);
        let before = echo.threads.lock().unwrap().len();
        let mut cx = Context::from_waker(Waker::noop());
        let mut lead = Box::pin(exec.fold(row(1.0)));
        assert!(
            lead.as_mut().poll(&mut cx).is_pending(),
            "the leader yields"
        );
        let mut other = Box::pin(exec.fold(row(2.0)));
        assert!(other.as_mut().poll(&mut cx).is_pending(), "joins the fold");
        drop(lead);
        let Poll::Ready(answer) = other.as_mut().poll(&mut cx) else {
            panic!("the fold ran when its leader was dropped");
        };
        assert_eq!(answer.unwrap()[0].data, TensorData::F32(vec![2.0]));
        assert_eq!(echo.threads.lock().unwrap().len() - before, 1, "one call");
        // The next request opens a new fold.
        let mut next = Box::pin(exec.fold(row(3.0)));
        assert!(next.as_mut().poll(&mut cx).is_pending());
        let Poll::Ready(answer) = next.as_mut().poll(&mut cx) else {
            panic!("a lone leader runs after its yield");
        };
        assert_eq!(answer.unwrap()[0].data, TensorData::F32(vec![3.0]));
    }
}
