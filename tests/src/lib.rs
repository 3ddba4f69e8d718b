//! Helpers shared by the end-to-end tests: throwaway servers, the agent under test.
