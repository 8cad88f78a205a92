// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * hakmem's BPF programs: what the traced processes do that hakmem cannot count
 * itself, and its totals at exit.
 *
 *  - hakmem counts and times its components in its own memory (per-thread
 *    records, see hakmem::probe); probe-cli reads them from /proc/PID/mem while
 *    a process lives. hakmem_probe_final (uprobe on the function hakmem calls
 *    once at exit) copies the process's summed record into `finals`, so the
 *    counts of a process that is gone are still there.
 *  - sys_enter / sys_exit (raw tracepoints on raw_syscalls, so no tracefs mount
 *    is needed): count, latency and bytes of the memory syscalls.
 *  - follow_fork / follow_exec / follow_exit (raw tracepoints on sched_process_*):
 *    keep `traced`, the set of processes watched. probe-cli puts the first one
 *    in; with `follow` set, every child a traced process forks joins it, so a
 *    program started through env, sh -c or a script is traced to its last exit.
 *
 * Everything is filtered by `traced`. Syscalls land in bounded per-CPU arrays
 * that userspace sums. Layouts and constants come from hakmem_layout.h,
 * generated from Rust.
 */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "hakmem_layout.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* The one task_struct field follow_fork reads, relocated by the loader against
 * the running kernel's BTF (CO-RE): no kernel headers needed. */
struct task_struct {
	int tgid;
} __attribute__((preserve_access_index));

/* Non-zero: children of traced processes are traced too (set by the loader). */
const volatile __u32 follow = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, HAKMEM_MAX_TRACED);
	__type(key, __u32);
	__type(value, struct traced_process);
} traced SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, HAKMEM_MAX_TRACED);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct process_totals);
} finals SEC(".maps");

/* Room to copy a record from user memory before it goes into `finals`. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct process_totals);
} scratch SEC(".maps");

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

/*
 * The syscall programs are raw tracepoints (BPF_RAW_TRACEPOINT_OPEN by name):
 * unlike a tracefs tracepoint they need no tracefs mount, which a fresh machine
 * does not have. raw_syscalls:sys_enter passes (struct pt_regs *regs, long id),
 * sys_exit (struct pt_regs *regs, long ret); the arguments are read from regs
 * (x86-64 syscall ABI: rdi, rsi, rdx, r10, r8, r9).
 */
static __always_inline unsigned long syscall_arg(struct pt_regs *regs, int n)
{
	unsigned long v = 0;
	switch (n) {
	case 0: bpf_probe_read_kernel(&v, sizeof(v), &regs->rdi); break;
	case 1: bpf_probe_read_kernel(&v, sizeof(v), &regs->rsi); break;
	case 2: bpf_probe_read_kernel(&v, sizeof(v), &regs->rdx); break;
	case 3: bpf_probe_read_kernel(&v, sizeof(v), &regs->r10); break;
	case 4: bpf_probe_read_kernel(&v, sizeof(v), &regs->r8); break;
	case 5: bpf_probe_read_kernel(&v, sizeof(v), &regs->r9); break;
	}
	return v;
}

static __always_inline struct traced_process *traced_self(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	return bpf_map_lookup_elem(&traced, &tgid);
}

static __always_inline int is_target(void)
{
	struct traced_process *p = traced_self();
	return p && !p->exited;
}

static __always_inline void bump_misc(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&misc, &slot);
	if (v)
		__sync_fetch_and_add(v, 1);
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
int hakmem_probe_final(struct pt_regs *ctx)
{
	if (!is_target())
		return 0;
	__u32 zero = 0;
	struct process_totals *t = bpf_map_lookup_elem(&scratch, &zero);
	if (!t)
		return 0;
	if (bpf_probe_read_user(t, sizeof(*t), (const void *)PT_REGS_PARM1(ctx))) {
		bump_misc(HAKMEM_MISC_FINAL_UNREADABLE);
		return 0;
	}
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (bpf_map_update_elem(&finals, &tgid, t, BPF_ANY))
		bump_misc(HAKMEM_MISC_TRACED_FULL);
	return 0;
}

SEC("raw_tracepoint/sys_enter")
int sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	/* The syscall number first: a few compares turn away every syscall of
	 * the machine but the six, before the traced-set lookup (a hash). */
	int slot = hakmem_syscall_slot((long)ctx->args[1]);
	if (slot < 0)
		return 0;
	if (!is_target())
		return 0;
	int len_arg = hakmem_syscall_len_arg(slot);
	struct syscall_start start = {
		.start_ns = bpf_ktime_get_ns(),
		.bytes = len_arg >= 0 ? syscall_arg((struct pt_regs *)ctx->args[0], len_arg) : 0,
		.slot = slot,
	};
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	if (bpf_map_update_elem(&inflight, &tid, &start, BPF_ANY))
		bump_misc(HAKMEM_MISC_INFLIGHT_FULL);
	return 0;
}

SEC("raw_tracepoint/sys_exit")
int sys_exit(struct bpf_raw_tracepoint_args *ctx)
{
	/* As sys_enter: the number (orig_rax of the saved registers) first. */
	long nr = -1;
	bpf_probe_read_kernel(&nr, sizeof(nr), &((struct pt_regs *)ctx->args[0])->orig_rax);
	if (hakmem_syscall_slot(nr) < 0)
		return 0;
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
	/* Atomic even per CPU: a syscall tracepoint program may be preempted. */
	__sync_fetch_and_add(&s->count, 1);
	__sync_fetch_and_add(&s->sum_ns, ns);
	if (ns > s->max_ns)
		s->max_ns = ns;
	/* Errors are -4095..-1 (mmap's addresses are never in that range). */
	if ((unsigned long)ctx->args[1] >= (unsigned long)-4095)
		__sync_fetch_and_add(&s->failed, 1);
	else
		__sync_fetch_and_add(&s->sum_bytes, bytes);
	__sync_fetch_and_add(&s->hist[log2_bucket(ns)], 1);
	return 0;
}

SEC("raw_tracepoint/sched_process_fork")
int follow_fork(struct bpf_raw_tracepoint_args *ctx)
{
	if (!follow)
		return 0;
	/* (struct task_struct *parent, struct task_struct *child); current is the parent. */
	__u32 parent = bpf_get_current_pid_tgid() >> 32;
	struct traced_process *p = bpf_map_lookup_elem(&traced, &parent);
	if (!p || p->exited)
		return 0;
	struct task_struct *child = (struct task_struct *)ctx->args[1];
	__u32 tgid = BPF_CORE_READ(child, tgid);
	if (tgid == parent)
		return 0; /* a new thread, not a new process */
	struct traced_process c = {
		.parent = parent,
	};
	__builtin_memcpy(c.comm, p->comm, sizeof(c.comm));
	if (bpf_map_update_elem(&traced, &tgid, &c, BPF_ANY))
		bump_misc(HAKMEM_MISC_TRACED_FULL);
	else
		bump_misc(HAKMEM_MISC_FORKS_FOLLOWED);
	return 0;
}

SEC("raw_tracepoint/sched_process_exec")
int follow_exec(struct bpf_raw_tracepoint_args *ctx)
{
	struct traced_process *p = traced_self();
	if (!p || p->exited)
		return 0;
	p->execs += 1;
	bpf_get_current_comm(p->comm, sizeof(p->comm));
	return 0;
}

SEC("raw_tracepoint/sched_process_exit")
int follow_exit(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if ((__u32)id != (__u32)(id >> 32))
		return 0; /* a thread other than the leader */
	struct traced_process *p = traced_self();
	if (p)
		p->exited = 1;
	return 0;
}
