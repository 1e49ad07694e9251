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

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use tokio::sync::oneshot;

use crate::metrics::Metrics;
use crate::runtime::{Runtime, RuntimeError};
use crate::tensor::{Tensor, TensorData};

/// Batching settings; `max_batch_size <= 1` turns batching off.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    pub max_batch_size: usize,
    pub max_batch_delay: Duration,
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
                a.data.datatype() == b.data.datatype()
                    && a.shape.len() == b.shape.len()
                    && a.shape.get(1..) == b.shape.get(1..)
            })
    }
}

/// A pool of worker threads in front of one loaded model.
pub struct Executor {
    tx: Sender<Job>,
}

impl Executor {
    pub fn new(
        runtime: Arc<dyn Runtime>,
        workers: usize,
        queue: usize,
        batch: BatchConfig,
        metrics: Arc<Metrics>,
    ) -> Executor {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(queue.max(1));
        let batchable = batch.max_batch_size > 1
            && runtime
                .inputs()
                .iter()
                .chain(runtime.outputs())
                .all(|s| s.shape.first().is_some_and(|&d| d < 0));
        for i in 0..workers.max(1) {
            let worker = Worker {
                runtime: runtime.clone(),
                rx: rx.clone(),
                batch,
                batchable,
                metrics: metrics.clone(),
            };
            std::thread::Builder::new()
                .name(format!("hoist-infer-{i}"))
                .spawn(move || worker.run())
                .expect("spawn inference worker");
        }
        Executor { tx }
    }

    /// Queues `inputs` and waits for the outputs.
    pub async fn submit(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, ExecError> {
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
    runtime: Arc<dyn Runtime>,
    rx: Receiver<Job>,
    batch: BatchConfig,
    batchable: bool,
    metrics: Arc<Metrics>,
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
            if !self.batchable {
                self.run_one(first);
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
            if jobs.len() == 1 {
                self.run_one(jobs.pop().expect("one job"));
            } else {
                self.run_batch(jobs, rows);
            }
        }
    }

    /// Runs the model, turning a panic inside the runtime into an error for this call
    /// alone: the worker lives on.
    fn guarded_run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.runtime.run(inputs)))
            .unwrap_or_else(|_| Err(RuntimeError::Run("the runtime panicked".into())))
    }

    fn run_one(&self, job: Job) {
        let rows = job.rows();
        let start = Instant::now();
        let result = self.guarded_run(&job.inputs);
        self.metrics.observe_inference(start.elapsed(), rows);
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
        let start = Instant::now();
        let outputs = inputs.and_then(|inputs| self.guarded_run(&inputs));
        self.metrics.observe_inference(start.elapsed(), rows);
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
