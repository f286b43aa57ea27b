export { deliver, type Delivery, type DeliveryPlan, type DeliveryResult, type PlanChoices, planDeliveries, signedRequest } from "./delivery.ts";
export { FAKE_API_KEY, FakeClock, type FakeStripe, startFakeStripe } from "./server.ts";
