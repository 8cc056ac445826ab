/* corral_clone3: clone3(2) with a child that runs fn(arg) on its own stack, then exits.
 *
 * glibc (before 2.39) exports no clone3 wrapper, and a plain syscall(SYS_clone3, ...) cannot be
 * used with a new stack: the child would return from syscall() through a stack that does not
 * hold its frame. So the child side is written here: after the syscall the child's registers
 * equal the parent's except %rax (0) and %rsp (the new stack), so fn and arg travel in the
 * callee-saved %r12 and %r13, which the syscall instruction preserves.
 *
 *   long corral_clone3(struct clone_args *args, size_t size, int (*fn)(void *), void *arg);
 *
 * Returns the child's pid in the parent, or -errno. The child never returns: it calls
 * exit(fn(arg)) with the raw syscall (it must not run atexit handlers of the parent's image).
 */
#if defined(__x86_64__)
	.text
	.globl	corral_clone3
	.type	corral_clone3, @function
corral_clone3:
	.cfi_startproc
	pushq	%r12
	.cfi_adjust_cfa_offset 8
	pushq	%r13
	.cfi_adjust_cfa_offset 8
	movq	%rdx, %r12
	movq	%rcx, %r13
	movl	$435, %eax		/* __NR_clone3 */
	syscall
	testq	%rax, %rax
	jz	1f
	popq	%r13
	.cfi_adjust_cfa_offset -8
	popq	%r12
	.cfi_adjust_cfa_offset -8
	ret
1:	/* child: fresh stack, no caller frame */
	.cfi_undefined rip
	xorl	%ebp, %ebp
	movq	%r13, %rdi
	call	*%r12
	movl	%eax, %edi
	movl	$60, %eax		/* __NR_exit */
	syscall
	hlt
	.cfi_endproc
	.size	corral_clone3, .-corral_clone3
#endif
	.section .note.GNU-stack,"",@progbits
