// Names for the API's shapes. All of them come from schema.gen.ts, which
// openapi-typescript generates from internal/api/openapi.json
// (`npm run gen:api`); nothing here is written by hand.
import type { components, paths } from './schema.gen';

export type { paths };
type Schemas = components['schemas'];

export type User = Schemas['User'];
export type Credits = Schemas['Credits'];
export type Session = Schemas['Session'];
export type Model = Schemas['Model'];
export type Conversation = Schemas['Conversation'];
export type ConversationWithMessages = Schemas['ConversationWithMessages'];
export type Message = Schemas['Message'];
export type MessageStatus = Message['status'];
export type ImageJob = Schemas['ImageJob'];
export type ImageResolution = Schemas['CreateImageRequest']['resolution'];
export type SignupRequest = Schemas['SignupRequest'];
export type LoginRequest = Schemas['LoginRequest'];
export type ErrorCode = Schemas['Error']['error']['code'];
export type AuthConfig = paths['/v1/auth/config']['get']['responses'][200]['content']['application/json'];

// The events of GET /v1/messages/{id}/stream and GET /v1/events.
export type MessageStreamEvent = Schemas['MessageStreamEvent'];
export type UserEvent = Schemas['UserEvent'];
export type StreamEnd = Schemas['MessageStreamDone'] | Schemas['MessageStreamError'];
