//! What a guest restored from a template VM's snapshot must redo: every clone of a template wakes
//! up with the template's kernel random state and the template's wall clock.
//!
//! [`restored`] mixes the host's entropy into the kernel's input pool (`RNDADDENTROPY`, crediting
//! it), forces the kernel's random generator to reseed from that pool (`RNDRESEEDCRNG`), so
//! `/dev/urandom` and `getrandom(2)` differ from clone to clone from here on, and sets the wall
//! clock to the host's time (`clock_settime(CLOCK_REALTIME)`). Processes started before the
//! snapshot (the agent itself) keep what they derived from the old state; the containers, started
//! afterwards, do not have any.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::time::Duration;

use isola_proto::{Response, MAX_RESTORE_ENTROPY, MIN_RESTORE_ENTROPY};

use crate::error::AgentError;

/// `_IOW('R', 0x03, int[2])`: add bytes to the input pool and credit their entropy.
const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
/// `_IO('R', 0x07)`: reseed the CRNG from the input pool now.
const RNDRESEEDCRNG: libc::c_ulong = 0x5207;
/// The device both ioctls are issued on.
const RANDOM_DEVICE: &str = "/dev/urandom";

/// Handles `Restored`: checks the request, reseeds the kernel's random generator with `entropy`
/// and sets the wall clock to `unix_time_ns`.
///
/// # Errors
/// [`AgentError::Invalid`] when `entropy` has fewer than [`MIN_RESTORE_ENTROPY`] or more than
/// [`MAX_RESTORE_ENTROPY`] bytes; [`AgentError::Io`] when the random device, an ioctl or
/// `clock_settime` fails.
pub fn restored(unix_time_ns: u64, entropy: &[u8]) -> Result<Response, AgentError> {
    if !(MIN_RESTORE_ENTROPY..=MAX_RESTORE_ENTROPY).contains(&entropy.len()) {
        return Err(AgentError::Invalid(format!(
            "entropy: {} bytes, must be {MIN_RESTORE_ENTROPY} to {MAX_RESTORE_ENTROPY}",
            entropy.len()
        )));
    }
    let random = File::open(RANDOM_DEVICE).map_err(|e| AgentError::io("open", RANDOM_DEVICE, e))?;
    add_entropy(&random, entropy)
        .map_err(|e| AgentError::io("RNDADDENTROPY on", RANDOM_DEVICE, e))?;
    reseed(&random).map_err(|e| AgentError::io("RNDRESEEDCRNG on", RANDOM_DEVICE, e))?;
    set_clock(Duration::from_nanos(unix_time_ns))
        .map_err(|e| AgentError::io("set", "the wall clock", e))?;
    Ok(Response::Done)
}

/// `struct rand_pool_info` with its buffer inline (`buf` is `__u32[]` in the kernel's header;
/// the kernel reads `buf_size` bytes of it).
#[repr(C)]
struct PoolInfo {
    entropy_count: libc::c_int,
    buf_size: libc::c_int,
    buf: [u8; MAX_RESTORE_ENTROPY],
}

/// Mixes `bytes` into the input pool, crediting 8 bits of entropy per byte (they come from the
/// host's `getrandom`).
fn add_entropy(random: &File, bytes: &[u8]) -> std::io::Result<()> {
    let mut info = PoolInfo {
        entropy_count: (bytes.len() * 8) as libc::c_int,
        buf_size: bytes.len() as libc::c_int,
        buf: [0; MAX_RESTORE_ENTROPY],
    };
    info.buf[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: RNDADDENTROPY reads a `rand_pool_info` header and `buf_size` bytes after it;
    // `info` is a live, properly laid out struct whose buffer holds `buf_size` (≤ its length)
    // initialised bytes, and the descriptor is open.
    let r = unsafe { libc::ioctl(random.as_raw_fd(), RNDADDENTROPY as _, &info) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the kernel reseed its CRNG from the input pool now.
fn reseed(random: &File) -> std::io::Result<()> {
    // SAFETY: RNDRESEEDCRNG takes no argument; the descriptor is open.
    let r = unsafe { libc::ioctl(random.as_raw_fd(), RNDRESEEDCRNG as _) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn set_clock(since_epoch: Duration) -> std::io::Result<()> {
    let ts = libc::timespec {
        tv_sec: since_epoch.as_secs() as libc::time_t,
        tv_nsec: since_epoch.subsec_nanos() as libc::c_long,
    };
    // SAFETY: clock_settime reads the timespec, which lives for the call.
    let r = unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_too_little_or_too_much_entropy() {
        for n in [0, MIN_RESTORE_ENTROPY - 1, MAX_RESTORE_ENTROPY + 1] {
            let e = restored(0, &vec![1; n]).unwrap_err();
            assert!(matches!(e, AgentError::Invalid(_)), "{e}");
            assert!(e.to_string().starts_with("entropy: "), "{e}");
        }
    }

    #[test]
    fn ioctl_numbers_match_the_kernel_header() {
        // _IOW('R', 3, int[2]): direction write (1) << 30 | size 8 << 16 | 'R' << 8 | 3.
        assert_eq!(
            RNDADDENTROPY,
            (1 << 30) | (8 << 16) | (u64::from(b'R') << 8) | 3
        );
        assert_eq!(RNDRESEEDCRNG, (u64::from(b'R') << 8) | 7);
    }
}
