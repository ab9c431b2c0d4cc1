//! Link options for the `shoal` executable.

fn main() {
    // Pack the executable's relative relocations (DT_RELR): the table the dynamic loader reads
    // at every start shrinks from about 1.5 MiB to a few KiB, and with it each process's RSS.
    // glibc 2.36 and GNU ld 2.38 (or lld) support it; an older ld ignores the option with a
    // warning, and ld uses it only when the C library can load it.
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.ends_with("-linux-gnu") {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
