export { PowerSupervisor, type SupervisorHost, type SupervisorOptions, type FlushOutcome, type TimelineEntry, type SupervisorEvents } from './supervisor.ts';
export { step, initialState, type PowerStateName, type Thresholds, type MachineState, type Input, type Action, type Step } from './machine.ts';
