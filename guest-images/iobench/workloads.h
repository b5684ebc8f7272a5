/* The workloads main.c chooses from; each prints its marks and one result line. */
#pragma once
#include "platform.h"

void blk_workload(int irq, u64 hold_ns);
void net_workload(int irq, u64 hold_ns);
void hostile_workload(void);
void net_hostile_workload(void);
void redirect_workload(u64 hold_ns);
