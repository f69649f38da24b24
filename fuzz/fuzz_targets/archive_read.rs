//! Archives from arbitrary bytes: `read_archive` never panics out (the Parquet reader panics on
//! some malformed footers; `read_archive` turns those into errors, see its doc); whatever reads as
//! a format 1 archive writes back to an archive that reads as the same rows.
#![no_main]

use keyfold_archive::{read_archive, write_archive};
use libfuzzer_sys::fuzz_target;

static QUIET_PANICS: std::sync::Once = std::sync::Once::new();

fuzz_target!(|data: &[u8]| {
    // libfuzzer-sys's panic hook aborts on every panic, even one `read_archive` catches; keep the
    // default behaviour for panics that escape (libfuzzer-sys aborts on those when they unwind out
    // of this closure) and let caught ones pass quietly.
    QUIET_PANICS.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    if let Ok(rows) = read_archive(data) {
        let again = write_archive(&rows).expect("rows read from an archive can be written");
        assert_eq!(read_archive(&again).expect("our own archive reads"), rows);
    }
});
