//! The SQL injection verdict on arbitrary bytes: `sqli::is_sqli` (our fold over
//! `libinjectionrs`'s tokenizer) must give `libinjectionrs`'s own verdict.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    assert_eq!(
        securecart_waf::sqli::is_sqli(data),
        libinjectionrs::sqli::SqliState::new(data, libinjectionrs::sqli::SqliFlags::FLAG_NONE)
            .detect(),
        "{:?}",
        String::from_utf8_lossy(data)
    );
});
