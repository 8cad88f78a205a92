//! `gcc`: an `-O2` compile of a generated C file of many small structs and
//! functions — the compiler's trees and hash tables, allocated and freed in
//! the millions by `cc1` (a child of the driver; `wait4` reports the larger
//! of their peak RSS).

use super::measure::{self, Invocation};
use super::{Context, Program, Sample};
use std::fmt::Write;
use std::time::Duration;

/// The table entry.
pub const PROGRAM: Program = Program {
    name: "gcc",
    about: "gcc -O2 -c of a generated C file (structs and functions)",
    needs: &["gcc"],
    probe: &["gcc", "--version"],
    prepare,
    run,
};

const SOURCE: &str = "generated.c";

fn prepare(cx: &Context) -> Result<(), String> {
    let funcs = cx.scaled(400, 10);
    let mut c = String::from("#include <stdio.h>\n#include <string.h>\n");
    for i in 1..=funcs {
        let n = i % 17 + 1;
        let _ = writeln!(c, "struct s{i} {{ int a[{n}]; double d; char name[32]; }};");
        let _ = writeln!(
            c,
            "static int f{i}(struct s{i} *s, int n) {{ int acc = 0; for (int k = 0; k < n; k++) \
             {{ acc += s->a[k % {n}] * k; if (acc > {}) acc ^= (int)strlen(s->name); }} return acc + (int)s->d; }}",
            i * 31
        );
    }
    c.push_str("int main(void) { int total = 0;\n");
    for i in 1..=funcs {
        let _ = writeln!(
            c,
            "  {{ struct s{i} v; memset(&v, {}, sizeof v); total += f{i}(&v, {i}); }}",
            i % 7
        );
    }
    c.push_str("  printf(\"%d\\n\", total); return 0; }\n");
    std::fs::write(cx.dir.join(SOURCE), c).map_err(|e| e.to_string())
}

fn run(cx: &Context) -> Result<Sample, String> {
    let invocation = Invocation::new(cx, &["gcc", "-O2", "-c", "-o", "generated.o", SOURCE]);
    let done = measure::run_to_end(&invocation, Duration::from_secs(600))?;
    Ok(Sample::from_finished(&done))
}
