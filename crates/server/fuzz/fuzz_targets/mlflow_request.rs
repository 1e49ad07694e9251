//! MLflow `/invocations` bodies: JSON (`dataframe_split`, `dataframe_records`,
//! `instances`, `inputs`) and CSV. Input: a first line `csv` selects `text/csv`,
//! anything else is a JSON body.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match data.strip_prefix(b"csv\n") {
        Some(csv) => hoist_server::fuzzing::mlflow_request("text/csv", csv),
        None => hoist_server::fuzzing::mlflow_request("application/json", data),
    }
});
