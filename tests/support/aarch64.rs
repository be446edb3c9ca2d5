//! A static aarch64 Linux program, assembled here (no arm64 binary can be
//! installed or pulled on this machine): it writes the machine name the
//! kernel reports (`uname -m`, `aarch64` under qemu) into `/ran-on` and
//! exits 0. A build `RUN`ning it in an arm64 stage shows that the stage
//! really ran, emulated.

/// `/proc/sys/fs/binfmt_misc/qemu-aarch64`: present when this host runs
/// arm64 binaries through qemu (`scripts/ensure-binfmt.sh` registers it).
pub const QEMU_AARCH64_HANDLER: &str = "/proc/sys/fs/binfmt_misc/qemu-aarch64";

/// Where the program writes the machine name.
pub const RAN_ON: &str = "/ran-on";

/// Whether arm64 binaries run here.
pub fn emulation_available() -> bool {
    std::path::Path::new(QEMU_AARCH64_HANDLER).exists()
}

const LOAD_ADDRESS: u64 = 0x40_0000;
const ELF_HEADER: usize = 64;
const PROGRAM_HEADER: usize = 56;
const CODE: usize = ELF_HEADER + PROGRAM_HEADER;
/// Bytes of `struct utsname` before `machine` (five fields of 65 bytes).
const MACHINE_OFFSET: u32 = 4 * 65;

fn adr(rd: u32, offset: i64) -> u32 {
    let imm = offset as u32;
    0x1000_0000 | ((imm & 3) << 29) | (((imm >> 2) & 0x7ffff) << 5) | rd
}
fn movz(rd: u32, imm: u32) -> u32 {
    0xD280_0000 | (imm << 5) | rd
}
fn movn(rd: u32, imm: u32) -> u32 {
    0x9280_0000 | (imm << 5) | rd
}
fn add_imm(rd: u32, rn: u32, imm: u32) -> u32 {
    0x9100_0000 | (imm << 10) | (rn << 5) | rd
}
const SVC_0: u32 = 0xD400_0001;

/// The program's bytes (a few hundred).
pub fn ran_on_program() -> Vec<u8> {
    const INSTRUCTIONS: usize = 17;
    let path = format!("{RAN_ON}\0");
    let path_at = CODE + INSTRUCTIONS * 4;
    let buf_at = (path_at + path.len() + 7) & !7;
    let mut code: Vec<u32> = Vec::new();
    let here = |code: &Vec<u32>| (CODE + code.len() * 4) as i64;
    // uname(buf)
    code.push(adr(0, buf_at as i64 - here(&code)));
    code.extend([movz(8, 160), SVC_0]);
    // x0 = openat(AT_FDCWD, path, O_WRONLY|O_CREAT|O_TRUNC, 0644)
    code.push(movn(0, 99));
    code.push(adr(1, path_at as i64 - here(&code)));
    code.extend([movz(2, 0x241), movz(3, 0o644), movz(8, 56), SVC_0]);
    // write(x0, buf.machine, 7)
    code.push(adr(1, buf_at as i64 - here(&code)));
    code.extend([
        add_imm(1, 1, MACHINE_OFFSET),
        movz(2, 7),
        movz(8, 64),
        SVC_0,
    ]);
    // exit(0)
    code.extend([movz(0, 0), movz(8, 93), SVC_0]);
    assert_eq!(code.len(), INSTRUCTIONS);

    let mut body: Vec<u8> = code.iter().flat_map(|i| i.to_le_bytes()).collect();
    body.extend_from_slice(path.as_bytes());
    body.resize(buf_at - CODE, 0);
    let file_size = (CODE + body.len()) as u64;
    let entry = LOAD_ADDRESS + CODE as u64;

    let mut elf = Vec::new();
    elf.extend_from_slice(b"\x7fELF\x02\x01\x01\x00");
    elf.extend_from_slice(&[0; 8]);
    elf.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf.extend_from_slice(&0xb7u16.to_le_bytes()); // EM_AARCH64
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&entry.to_le_bytes());
    elf.extend_from_slice(&(ELF_HEADER as u64).to_le_bytes()); // program headers
    elf.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    elf.extend_from_slice(&0u32.to_le_bytes());
    for half in [ELF_HEADER, PROGRAM_HEADER, 1, 0, 0, 0] {
        elf.extend_from_slice(&(half as u16).to_le_bytes());
    }
    // One PT_LOAD, read-write-execute, with room for `struct utsname`.
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&7u32.to_le_bytes());
    elf.extend_from_slice(&0u64.to_le_bytes());
    elf.extend_from_slice(&LOAD_ADDRESS.to_le_bytes());
    elf.extend_from_slice(&LOAD_ADDRESS.to_le_bytes());
    elf.extend_from_slice(&file_size.to_le_bytes());
    elf.extend_from_slice(&(file_size + 512).to_le_bytes());
    elf.extend_from_slice(&0x1000u64.to_le_bytes());
    elf.extend_from_slice(&body);
    elf
}
