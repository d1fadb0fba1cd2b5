"""gunicorn config for profiling (dispatch_overhead.py --trace): one line per
request with its wall-clock start and end and the CPU time of the thread that
served it, so a prediction's webhooks, uploads and the waiting POST line up
with the rows' timestamps."""

import time


def pre_request(worker, req):
    req._trace_start = time.time()
    req._trace_cpu = time.thread_time()


def post_request(worker, req, environ, resp):
    worker.log.info(
        "TRACE %.6f %.6f %.6f %s %s %s %s",
        req._trace_start,
        time.time(),
        time.thread_time() - req._trace_cpu,
        worker.pid,
        req.method,
        req.path,
        getattr(resp, "status_code", resp.status),
    )
