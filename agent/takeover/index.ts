/**
 * Leadership: the roles (roles.ts, one sequence that reads top to bottom) over the parts that own state or
 * a rule of their own (epochs, leader-rules, leader-store, heartbeats, lease, silence-watch, regression). LEADERSHIP.md
 * says why each rule holds.
 */
export { RoleManager, type Role, type RoleHost, type RoleManagerOptions, type TakeoverRecord } from './roles.ts';
