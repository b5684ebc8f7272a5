// C shim: only what Swift cannot import directly, one header per subject.
#ifndef CKVM_H
#define CKVM_H

#include "ckvm_atomics.h"
#include "ckvm_bpf.h"
#include "ckvm_host_bench.h"
#include "ckvm_io_uring.h"
#include "ckvm_kvm.h"
#include "ckvm_sockets.h"
#include "ckvm_tap.h"
#include "ckvm_threads.h"

#endif
