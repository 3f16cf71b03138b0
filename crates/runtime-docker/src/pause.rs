//! The pause image `berth-pause:latest`: what holds an awsvpc task's network namespace.
//!
//! The image is `FROM scratch` plus one tiny static program, `/pause`, generated here as
//! machine code (a 185-byte ELF on x86_64), so nothing is pulled, nothing is compiled at run
//! time and the image does not depend on the host's libraries. The program blocks in
//! `pause(2)` forever; on x86_64 it installs handlers so SIGTERM and SIGINT end it at once
//! with exit 0 (a PID 1 ignores signals it has no handler for); on aarch64 it blocks in
//! `ppoll(2)` and ends on SIGKILL (Berth removes pause containers by force anyway).
//!
//! Contract: [`DockerRuntime::ensure_pause_image`] builds the image through the engine's
//! classic builder when it is missing or holds another program (label
//! [`PAUSE_BINARY_LABEL`]), and is idempotent.

use std::collections::BTreeMap;

use berth_runtime::{ImageInfo, Runtime, RuntimeError};
use sha2::{Digest, Sha256};

use crate::DockerRuntime;
use crate::demo::{BuildContext, tar_of};

/// The pause image's tag.
pub const PAUSE_IMAGE: &str = "berth-pause:latest";
/// Label naming the SHA-256 of the program inside the pause image.
pub const PAUSE_BINARY_LABEL: &str = "berth.pause.binary-sha256";

const DOCKERFILE: &str =
    "FROM scratch\nCOPY pause /pause\nLABEL berth.pause=\"1\"\nENTRYPOINT [\"/pause\"]\n";

const BASE: u64 = 0x40_0000;
const HEADERS: usize = 64 + 56;

/// The program's machine code for `arch` (`x86_64` or `aarch64`), loaded at `BASE + 120`.
fn code(arch: &str) -> Option<Vec<u8>> {
    match arch {
        "x86_64" => {
            let handler = BASE + 168;
            let mut c: Vec<u8> = vec![
                0x48, 0x8d, 0x35, 0x39, 0x00, 0x00, 0x00, // lea rsi, [rip+57] (&act)
                0xbf, 0x0f, 0x00, 0x00, 0x00, // mov edi, 15 (SIGTERM)
                0x31, 0xd2, // xor edx, edx (no old action)
                0x41, 0xba, 0x08, 0x00, 0x00, 0x00, // mov r10d, 8 (sigset size)
                0xb8, 0x0d, 0x00, 0x00, 0x00, // mov eax, 13 (rt_sigaction)
                0x0f, 0x05, // syscall
                0xbf, 0x02, 0x00, 0x00, 0x00, // mov edi, 2 (SIGINT)
                0xb8, 0x0d, 0x00, 0x00, 0x00, // mov eax, 13
                0x0f, 0x05, // syscall
                // loop:
                0xb8, 0x22, 0x00, 0x00, 0x00, // mov eax, 34 (pause)
                0x0f, 0x05, // syscall
                0xeb, 0xf7, // jmp loop
                // handler:
                0x31, 0xff, // xor edi, edi
                0xb8, 0xe7, 0x00, 0x00, 0x00, // mov eax, 231 (exit_group)
                0x0f, 0x05, // syscall
            ];
            c.resize(184 - HEADERS, 0); // align the sigaction to 8
            for v in [handler, 0x0400_0000 /* SA_RESTORER */, handler, 0] {
                c.extend_from_slice(&v.to_le_bytes());
            }
            Some(c)
        }
        "aarch64" => {
            let mut c = Vec::new();
            for insn in [
                0xd280_0000u32, // mov x0, #0 (fds)
                0xd280_0001,    // mov x1, #0 (nfds)
                0xd280_0002,    // mov x2, #0 (no timeout)
                0xd280_0003,    // mov x3, #0 (no sigmask)
                0xd280_0928,    // mov x8, #73 (ppoll)
                0xd400_0001,    // svc #0
                0x17ff_fffa,    // b (back to the first mov)
            ] {
                c.extend_from_slice(&insn.to_le_bytes());
            }
            Some(c)
        }
        _ => None,
    }
}

/// The pause program for `arch` as a static ELF executable, `None` for an architecture it
/// has no code for.
pub fn pause_elf(arch: &str) -> Option<Vec<u8>> {
    let code = code(arch)?;
    let machine: u16 = if arch == "x86_64" { 0x3e } else { 0xb7 };
    let size = (HEADERS + code.len()) as u64;
    let mut e = Vec::with_capacity(size as usize);
    e.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    e.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    e.extend_from_slice(&machine.to_le_bytes());
    e.extend_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    e.extend_from_slice(&(BASE + HEADERS as u64).to_le_bytes()); // entry
    e.extend_from_slice(&64u64.to_le_bytes()); // program headers
    e.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    e.extend_from_slice(&0u32.to_le_bytes()); // flags
    for v in [64u16, 56, 1, 64, 0, 0] {
        e.extend_from_slice(&v.to_le_bytes());
    }
    // One PT_LOAD, read + execute, the whole file.
    e.extend_from_slice(&1u32.to_le_bytes());
    e.extend_from_slice(&5u32.to_le_bytes());
    for v in [0, BASE, BASE, size, size, 0x1000] {
        e.extend_from_slice(&v.to_le_bytes());
    }
    e.extend_from_slice(&code);
    Some(e)
}

impl DockerRuntime {
    /// [`PAUSE_IMAGE`], built unless it already holds this build's program.
    pub async fn ensure_pause_image(&self) -> Result<ImageInfo, RuntimeError> {
        let arch = std::env::consts::ARCH;
        let bin = pause_elf(arch).ok_or_else(|| RuntimeError::Invalid {
            id: PAUSE_IMAGE.into(),
            message: format!("no pause program for {arch}"),
        })?;
        let digest = hex::encode(Sha256::digest(&bin));
        if let Some(img) = self.image(PAUSE_IMAGE).await?
            && img.labels.get(PAUSE_BINARY_LABEL) == Some(&digest)
        {
            return Ok(img);
        }
        let tar = tar_of(&[("Dockerfile", 0o644, DOCKERFILE.as_bytes()), ("pause", 0o755, &bin)])
            .map_err(|e| RuntimeError::Engine { op: "build", message: e.to_string() })?;
        let labels = BTreeMap::from([(PAUSE_BINARY_LABEL.to_string(), digest)]);
        self.build_image(PAUSE_IMAGE, BuildContext::Tar(tar), &labels).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_elf_is_well_formed() {
        let e = pause_elf("x86_64").unwrap();
        assert_eq!(&e[..4], b"\x7fELF");
        assert_eq!(e.len(), 216);
        // The sigaction's handler points at the handler code (xor edi, edi).
        let handler = u64::from_le_bytes(e[184..192].try_into().unwrap());
        assert_eq!(&e[(handler - BASE) as usize..][..2], &[0x31, 0xff]);
        // lea's target is the sigaction.
        assert_eq!(127 + 0x39, 184);
        assert_eq!(pause_elf("aarch64").unwrap().len(), HEADERS + 28);
        assert!(pause_elf("mips").is_none());
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_program_runs_until_sigterm_then_exits_0() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("berth-pause-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pause");
        std::fs::write(&path, pause_elf("x86_64").unwrap()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut child = std::process::Command::new(&path).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(child.try_wait().unwrap().is_none(), "it keeps running");
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "SIGTERM ends it with exit 0: {status:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
