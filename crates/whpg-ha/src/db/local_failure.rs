//! Failures of our own: a probe that could not be made because this process ran out of
//! descriptors or memory says nothing about the database it was aimed at (design, invariant 9).
//! Every probe shell maps such an error to "unknown", never to "down" and never to "alive".

use std::error::Error;
use std::io;

/// The errno values that mean "this process or this machine could not provide the resources":
/// descriptors (`EMFILE`, `ENFILE`), memory (`ENOMEM`) and socket buffers (`ENOBUFS`). `EAGAIN`
/// from a nonblocking socket is not among them: it is flow, not exhaustion.
pub const LOCAL_ERRNOS: [i32; 4] = [libc::EMFILE, libc::ENFILE, libc::ENOMEM, libc::ENOBUFS];

/// The errno of `e` when it is a local resource failure (see [`LOCAL_ERRNOS`]).
pub fn local_errno(e: &io::Error) -> Option<i32> {
    match e.raw_os_error() {
        Some(errno) if LOCAL_ERRNOS.contains(&errno) => Some(errno),
        Some(_) => None,
        None if e.kind() == io::ErrorKind::OutOfMemory => Some(libc::ENOMEM),
        None => None,
    }
}

/// The first local resource failure in `error` or its chain of sources (a driver error wraps the
/// `io::Error` of the socket it could not open).
pub fn local_errno_in(error: &(dyn Error + 'static)) -> Option<i32> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if let Some(errno) = local_errno(io) {
                return Some(errno);
            }
            // An io::Error may wrap another error (a custom payload): look inside it too.
            if let Some(inner) = io.get_ref() {
                if let Some(errno) = local_errno_in(inner) {
                    return Some(errno);
                }
            }
        }
        current = e.source();
    }
    None
}

/// `EMFILE (Too many open files)` for logs.
pub fn describe(errno: i32) -> String {
    let name = match errno {
        libc::EMFILE => "EMFILE",
        libc::ENFILE => "ENFILE",
        libc::ENOMEM => "ENOMEM",
        libc::ENOBUFS => "ENOBUFS",
        _ => "errno",
    };
    format!("{name} ({})", io::Error::from_raw_os_error(errno))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exhaustion_errnos_are_local_and_others_are_not() {
        for errno in LOCAL_ERRNOS {
            assert_eq!(
                local_errno(&io::Error::from_raw_os_error(errno)),
                Some(errno)
            );
        }
        for errno in [
            libc::ECONNREFUSED,
            libc::ETIMEDOUT,
            libc::EHOSTUNREACH,
            libc::ENETUNREACH,
            libc::ECONNRESET,
            libc::EAGAIN,
            libc::ENOENT,
        ] {
            assert_eq!(local_errno(&io::Error::from_raw_os_error(errno)), None);
        }
        assert_eq!(
            local_errno(&io::Error::from(io::ErrorKind::OutOfMemory)),
            Some(libc::ENOMEM)
        );
        assert_eq!(
            local_errno(&io::Error::from(io::ErrorKind::UnexpectedEof)),
            None
        );
    }

    #[derive(Debug)]
    struct Wrapper(io::Error);
    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("error connecting to server")
        }
    }
    impl Error for Wrapper {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_wrapped_exhaustion_is_found_in_the_chain() {
        let wrapped = Wrapper(io::Error::from_raw_os_error(libc::EMFILE));
        assert_eq!(local_errno_in(&wrapped), Some(libc::EMFILE));
        let custom = io::Error::other(Wrapper(io::Error::from_raw_os_error(libc::ENFILE)));
        assert_eq!(local_errno_in(&custom), Some(libc::ENFILE));
        let refused = Wrapper(io::Error::from_raw_os_error(libc::ECONNREFUSED));
        assert_eq!(local_errno_in(&refused), None);
        assert!(describe(libc::EMFILE).starts_with("EMFILE ("));
    }
}
