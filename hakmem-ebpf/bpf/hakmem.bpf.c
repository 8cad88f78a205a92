// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * hakmem's BPF programs: aggregate, in the kernel, what one traced process does.
 *
 *  - hakmem_probe_event (uprobe on hakmem's nop5 probe function): per-component
 *    calls, cycles and a log2 histogram; hakmem measured the cycles itself, so
 *    the uprobe's own trap is not in them.
 *  - sys_enter / sys_exit (raw_syscalls tracepoints): count, latency and bytes of
 *    the memory syscalls. Only the watched numbers are counted, so the uprobe
 *    syscalls (335/336) every probe hit makes never show up.
 *  - hakmem_run_gate (uprobe on the target's entry point, `probe-cli run` only):
 *    stops the process once so the tracer can switch hakmem's tracing on before
 *    the program's first allocation.
 *
 * Everything is filtered by target_tgid and lands in bounded per-CPU arrays that
 * userspace sums: no event stream, no lock, no cross-CPU cache line.
 * Layouts and constants come from hakmem_layout.h, generated from Rust.
 */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "hakmem_layout.h"

#define SIGSTOP 19

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* The traced process; set by the loader (EbpfLoader::override_global). */
const volatile __u32 target_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HAKMEM_MAX_COMPONENTS);
	__type(key, __u32);
	__type(value, struct component_stats);
} component_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HAKMEM_SYSCALL_SLOTS);
	__type(key, __u32);
	__type(value, struct syscall_stats);
} syscall_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, HAKMEM_MAX_INFLIGHT);
	__type(key, __u32);
	__type(value, struct syscall_start);
} inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HAKMEM_MISC_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} misc SEC(".maps");

/* The raw_syscalls tracepoint records (see their format files in tracefs). */
struct raw_sys_enter {
	__u64 common;
	long id;
	unsigned long args[6];
};

struct raw_sys_exit {
	__u64 common;
	long id;
	long ret;
};

static __always_inline int is_target(void)
{
	return (bpf_get_current_pid_tgid() >> 32) == target_tgid;
}

static __always_inline void bump_misc(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&misc, &slot);
	if (v)
		*v += 1;
}

/* floor(log2(v)), 0 for v == 0: branch-free so the verifier sees no loop. */
static __always_inline __u32 log2_bucket(__u64 v)
{
	__u32 r = 0, shift;
	shift = (v > 0xFFFFFFFFULL) << 5; v >>= shift; r |= shift;
	shift = (v > 0xFFFF) << 4; v >>= shift; r |= shift;
	shift = (v > 0xFF) << 3; v >>= shift; r |= shift;
	shift = (v > 0xF) << 2; v >>= shift; r |= shift;
	shift = (v > 0x3) << 1; v >>= shift; r |= shift;
	r |= (v >> 1);
	return r & (HAKMEM_HIST_BUCKETS - 1);
}

SEC("uprobe")
int hakmem_probe_event(struct pt_regs *ctx)
{
	if (!is_target())
		return 0;
	__u32 component = (__u32)PT_REGS_PARM1(ctx);
	__u64 cycles = PT_REGS_PARM2(ctx);
	__u64 arg = PT_REGS_PARM3(ctx);

	struct component_stats *s = bpf_map_lookup_elem(&component_stats, &component);
	if (!s) {
		bump_misc(HAKMEM_MISC_UNKNOWN_COMPONENT);
		return 0;
	}
	/* Per-CPU value and uprobes run with preemption off: plain adds are exact. */
	s->calls += 1;
	s->sum_cycles += cycles;
	if (cycles > s->max_cycles)
		s->max_cycles = cycles;
	s->sum_arg += arg;
	if (arg)
		s->nonzero_arg += 1;
	s->hist[log2_bucket(cycles)] += 1;
	return 0;
}

SEC("tracepoint/raw_syscalls/sys_enter")
int sys_enter(struct raw_sys_enter *ctx)
{
	if (!is_target())
		return 0;
	int slot = hakmem_syscall_slot(ctx->id);
	if (slot < 0)
		return 0;
	/* The verifier refuses a variable offset into ctx: copy, then index the stack. */
	unsigned long args[6];
	__builtin_memcpy(args, ctx->args, sizeof(args));
	int len_arg = hakmem_syscall_len_arg(slot);
	struct syscall_start start = {
		.start_ns = bpf_ktime_get_ns(),
		.bytes = (len_arg >= 0 && len_arg < 6) ? args[len_arg] : 0,
		.slot = slot,
	};
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	if (bpf_map_update_elem(&inflight, &tid, &start, BPF_ANY))
		bump_misc(HAKMEM_MISC_INFLIGHT_FULL);
	return 0;
}

SEC("tracepoint/raw_syscalls/sys_exit")
int sys_exit(struct raw_sys_exit *ctx)
{
	if (!is_target())
		return 0;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct syscall_start *start = bpf_map_lookup_elem(&inflight, &tid);
	if (!start)
		return 0;
	__u64 ns = bpf_ktime_get_ns() - start->start_ns;
	__u32 slot = start->slot;
	__u64 bytes = start->bytes;
	bpf_map_delete_elem(&inflight, &tid);

	struct syscall_stats *s = bpf_map_lookup_elem(&syscall_stats, &slot);
	if (!s)
		return 0;
	s->count += 1;
	s->sum_ns += ns;
	if (ns > s->max_ns)
		s->max_ns = ns;
	/* Errors are -4095..-1 (mmap's addresses are never in that range). */
	if ((unsigned long)ctx->ret >= (unsigned long)-4095)
		s->failed += 1;
	else
		s->sum_bytes += bytes;
	s->hist[log2_bucket(ns)] += 1;
	return 0;
}

SEC("uprobe")
int hakmem_run_gate(struct pt_regs *ctx)
{
	if (!is_target())
		return 0;
	bump_misc(HAKMEM_MISC_GATE_STOPS);
	bpf_send_signal(SIGSTOP);
	return 0;
}
