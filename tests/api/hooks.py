"""Schemathesis checks for the run WITHOUT the daemon's token (tests/api/run.sh).

Loaded through SCHEMATHESIS_HOOKS only for that run: every request that could change
something must be refused. A POST to an operation the document lists must get 401
(before the body or the path is even looked at); any other method that is not a read
must not succeed either (405 for a method a route does not take).
"""

import schemathesis

READS = {"GET", "HEAD", "OPTIONS"}


@schemathesis.check
def no_write_without_the_token(ctx, response, case):
    method = (response.request.method or case.method).upper()
    if method in READS:
        return None
    status = response.status_code
    if method == "POST" and case.operation.method.upper() == "POST":
        if status != 401:
            raise AssertionError(
                f"POST {case.formatted_path} without the token answered {status}, not 401"
            )
    elif 200 <= status < 300:
        raise AssertionError(
            f"{method} {case.formatted_path} without the token answered {status}"
        )
    return None
