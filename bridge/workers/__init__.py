"""The work: the job queue, the workers that run jobs on engines, and the writer thread.

:mod:`~bridge.workers.jobs` is the queue (FIFO or latest-wins) and a job's life;
:mod:`~bridge.workers.pool` owns one engine slot per device (or Ray actor) and a
:mod:`~bridge.workers.worker` thread for each; :mod:`~bridge.workers.writes` hands each
result to the texture writer on a thread of its own while the next job denoises;
:mod:`~bridge.workers.ray_workers` runs engines as Ray actors (Ray imported only when asked).

May import :mod:`bridge.notify` (to tell subscribers), :mod:`bridge.contract`,
:mod:`bridge.output`, :mod:`bridge.osc`, the error tree and the settings; never
:mod:`bridge.serve` (which drives it).
"""
