export { type Delivery, deliver, type DeliveryPlan, type DeliveryResult, planDeliveries, type PlanChoices, signedRequest } from "./delivery.ts";
export { FAKE_API_KEY, FakeClock, type FakeStripe, startFakeStripe } from "./server.ts";
