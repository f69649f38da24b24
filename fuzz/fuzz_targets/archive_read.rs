//! Archives from arbitrary bytes: reading never panics (the Parquet and Arrow readers included);
//! whatever reads as a format 1 archive writes back to an archive that reads as the same rows.
#![no_main]

use keyfold_archive::{read_archive, write_archive};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(rows) = read_archive(data) {
        let again = write_archive(&rows).expect("rows read from an archive can be written");
        assert_eq!(read_archive(&again).expect("our own archive reads"), rows);
    }
});
